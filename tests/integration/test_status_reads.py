"""The status read (GET /tasks/<id>) against a redis-server that stops, hangs, refuses or holds something else."""

import contextlib
import os
import signal
import threading
import time

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from redis import Redis
from redis.exceptions import ResponseError
from rq import Worker

from taskqueue_site.settings import redis_url_with_timeouts
from tasks_app import connections, health, history, jobs, status
from tasks_app.models import JobRecord
from tests.integration.test_django_rq_pages import dashboard_urls
from tests.support.processes import redis_server, wait_until

NOT_A_JOB = f"{'0' * 8}-0000-4000-8000-{'0' * 12}"


@pytest.fixture
def site_redis(settings, monkeypatch):
    """Point the site at a redis-server of the test's own (stopped, paused or busy); return an admin client."""

    def point(port: int) -> Redis:
        url = redis_url_with_timeouts(f"redis://127.0.0.1:{port}/0", 0.5, 1.0)
        settings.RQ_QUEUES = {name: {**config, "URL": url} for name, config in settings.RQ_QUEUES.items()}
        monkeypatch.setattr(connections, "_connections", {})
        monkeypatch.setattr(connections, "_queues", {})
        return Redis(host="127.0.0.1", port=port)

    return point


def test_redis_down_is_a_fast_queue_unavailable(tmp_path, site_redis):
    with redis_server(tmp_path / "redis") as (port, _process):
        site_redis(port)
        task_id = jobs.enqueue_task(0)
        status.get_task_status(task_id)
    started = time.monotonic()
    with pytest.raises(connections.QueueUnavailable):
        status.get_task_status(task_id)
    assert time.monotonic() - started < 1


def test_a_hung_redis_costs_one_socket_timeout_not_two(tmp_path, site_redis):
    with redis_server(tmp_path / "redis") as (port, process):
        site_redis(port)
        task_id = jobs.enqueue_task(0)
        status.get_task_status(task_id)
        os.kill(process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(connections.QueueUnavailable):
                status.get_task_status(task_id)
            waited = time.monotonic() - started
        finally:
            os.kill(process.pid, signal.SIGCONT)
        assert 0.9 < waited < 1.9  # socket_timeout is 1 s: the timeout is not retried
        assert status.get_task_status(task_id).task_status == "queued"  # and the next read reconnects


def test_a_key_that_is_not_a_job_is_no_job_and_the_client_stays_usable(tmp_path, site_redis):
    with redis_server(tmp_path / "redis") as (port, _process):
        admin = site_redis(port)
        task_id = jobs.enqueue_task(0)
        admin.rpush(f"rq:job:{NOT_A_JOB}", "not a hash")
        with pytest.raises(status.TaskNotFound):
            status.get_task_status(NOT_A_JOB)
        assert status.get_task_status(task_id).task_status == "queued"


def test_a_busy_redis_is_a_queue_unavailable_not_a_missing_task(tmp_path, site_redis):
    with redis_server(tmp_path / "redis", "--busy-reply-threshold", "100") as (port, _process):
        admin = site_redis(port)
        task_id = jobs.enqueue_task(0)
        status.get_task_status(task_id)
        script = threading.Thread(target=run_endless_script, args=(port,))
        script.start()
        try:
            wait_until(lambda: answers_busy(admin), 5, "Redis to answer BUSY while the script runs")
            with pytest.raises(connections.QueueUnavailable, match="BUSY"):
                status.get_task_status(task_id)
        finally:
            with contextlib.suppress(ResponseError):
                admin.script_kill()
            script.join(10)
        assert status.get_task_status(task_id).task_status == "queued"


def run_endless_script(port: int) -> None:
    with contextlib.suppress(ResponseError):  # "Script killed by user"
        Redis(host="127.0.0.1", port=port).eval("while true do end", 0)


def answers_busy(admin: Redis) -> bool:
    try:
        admin.ping()
    except ResponseError as exc:
        return str(exc).startswith("BUSY")
    return False


def test_listing_workers_leaves_the_sites_client_failing_fast_when_redis_hangs(tmp_path, site_redis, db):
    with redis_server(tmp_path / "redis") as (port, process):
        admin = site_redis(port)
        task_id = jobs.enqueue_task(0)
        Worker(["default"], connection=admin, name="listed").register_birth()  # Worker.all builds it back
        assert [worker.name for worker in health.live_workers()] == ["listed"]
        assert health.current_health().workers[0].name == "listed"
        assert Client().get("/healthz").json()["data"]["workers"] == 1
        connections.get_connection().connection_pool.reset()
        status.get_task_status(task_id)  # on a new pooled connection, made with the client's settings as they are now
        os.kill(process.pid, signal.SIGSTOP)
        try:
            for read in (lambda: status.get_task_status(task_id), lambda: Client().get("/healthz")):
                started = time.monotonic()
                with contextlib.suppress(connections.QueueUnavailable):
                    read()
                assert time.monotonic() - started < 1.9  # one socket timeout (1 s), not RQ's minutes
        finally:
            os.kill(process.pid, signal.SIGCONT)


def test_after_every_admin_page_a_hung_redis_still_fails_fast(tmp_path, site_redis, db):
    """No admin page leaves the site's client with RQ's minutes-long socket timeout."""
    with redis_server(tmp_path / "redis") as (port, process):
        admin = site_redis(port)
        task_id = jobs.enqueue_task(0)
        worker = Worker(["default"], connection=admin, name="listed")
        worker.register_birth()
        history.insert_new_rows([task_id])
        root = Client()
        root.force_login(User.objects.create_superuser("root", password="x"))
        history_url = reverse("admin:tasks_app_jobrecord_changelist")
        pages = [
            reverse("admin:index"),
            history_url,
            f"{history_url}?status__exact=failed",
            reverse("admin:tasks_app_jobrecord_change", args=[JobRecord.objects.get(job_id=task_id).pk]),
            reverse("admin:tasks_app_jobrecord_health"),
            reverse("admin:tasks_app_jobrecord_health_json"),
            *dashboard_urls(task_id, worker.key),
        ]
        for url in pages:
            assert root.get(url).status_code in {200, 302, 403, 404, 405}, url
        # A busy site opens new pooled connections, made with the client's settings as the pages left them.
        connections.get_connection().connection_pool.reset()
        assert Client().get(f"/tasks/{task_id}").status_code == 200
        os.kill(process.pid, signal.SIGSTOP)
        try:
            for url in (f"/tasks/{task_id}", "/healthz"):
                started = time.monotonic()
                assert Client().get(url).status_code == 503, url
                assert time.monotonic() - started < 1.9, url  # one socket timeout (1 s), not RQ's minutes
        finally:
            os.kill(process.pid, signal.SIGCONT)
