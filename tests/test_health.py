"""GET /healthz: its answer, its speed when Redis is gone, and who may reach it."""

import socket
import time

import pytest
from django.test import Client
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from taskqueue_site.settings import sentinel_connection
from tasks_app import connections
from tasks_app.redis_sentinel import FailoverFollowingConnection
from tests.support.processes import free_port


def test_healthz_reports_queue_depths_and_live_workers(fake_redis):
    for queue_name, count in (("high", 1), ("default", 2)):
        queue = Queue(queue_name, connection=fake_redis, serializer=JSONSerializer)
        for _ in range(count):
            queue.enqueue("tests.support.jobs.touch", "/nonexistent")
    Worker(["default"], connection=fake_redis).register_birth()
    # A worker that died without cleaning up: still in RQ's set, but its key has expired.
    fake_redis.sadd("rq:workers", "rq:worker:gone")

    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "success",
        "data": {"redis": "ok", "queues": {"high": 1, "default": 2, "low": 0}, "workers": 1},
    }
    assert "no-cache" in response["Cache-Control"]


def assert_unreachable(response) -> None:
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["message"] == "Redis cannot be reached."  # no internal address leaks out
    assert body["data"] == {"redis": "unreachable", "queues": None, "workers": None}
    assert response["Retry-After"]


def test_healthz_answers_503_at_once_when_redis_is_down(down_redis):
    started = time.monotonic()
    response = Client().get("/healthz")
    assert time.monotonic() - started < 2
    assert_unreachable(response)


@pytest.fixture
def silent_port():
    """A port that takes connections (into the kernel's backlog) and never answers, like a hung server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("kind", ["refused", "hung"])
def test_healthz_through_sentinel_answers_503_within_two_seconds_when_no_sentinel_answers(
    settings, monkeypatch, silent_port, kind
):
    ports = [free_port() for _ in range(3)] if kind == "refused" else [silent_port] * 3
    connection = sentinel_connection(
        [("127.0.0.1", port) for port in ports],
        "taskqueue",
        connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        connection_class=FailoverFollowingConnection,
    )
    settings.RQ_QUEUES = {
        name: {**{k: v for k, v in config.items() if k != "URL"}, **connection}
        for name, config in settings.RQ_QUEUES.items()
    }
    monkeypatch.setattr(connections, "_connections", {})
    monkeypatch.setattr(connections, "_queues", {})

    for request in (lambda: Client().get("/healthz"), lambda: Client().post("/tasks", {"type": 1})):
        started = time.monotonic()
        response = request()
        assert time.monotonic() - started < 2
        assert response.status_code == 503
    assert_unreachable(Client().get("/healthz"))


def test_healthz_answers_any_host_over_plain_http(settings, fake_redis):
    """Load balancers probe by IP over HTTP: neither ALLOWED_HOSTS nor the HTTPS redirect stop them."""
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["tasks.example.com"]
    settings.SECURE_SSL_REDIRECT = True

    assert Client().get("/healthz", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert Client().get("/", HTTP_HOST="10.1.2.3:8000").status_code == 400  # everything else is guarded
    assert Client().get("/", HTTP_HOST="tasks.example.com").status_code == 301  # and redirected to HTTPS


def test_healthz_takes_only_get_and_head(fake_redis):
    response = Client().post("/healthz")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert Client().head("/healthz").status_code == 200
