"""A password and TLS reach every Redis client through REDIS_URL alone (rediss://:password@...)."""

import shutil
import subprocess

import pytest
from redis import Redis

from taskqueue_site.settings import redis_url_with_timeouts
from tasks_app import connections
from tests.support.http import create_task, task_status
from tests.support.processes import child_env, free_port, manage_py, stop, wait_until

PASSWORD = "s3cret-for-tests"


@pytest.fixture
def tls_redis(tmp_path):
    """redis-server with TLS only (no plain port) and a password; yields its rediss:// URL."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    port = free_port()
    process = subprocess.Popen(
        [shutil.which("redis-server"), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
        + ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert)]
        + ["--tls-auth-clients", "no", "--requirepass", PASSWORD, "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={cert}"

    def pings():
        try:
            return Redis.from_url(url, socket_timeout=1).ping()
        except Exception:
            return False

    try:
        wait_until(pings, 15, "TLS redis-server")
        yield url
    finally:
        stop(process)


def test_password_and_tls_work_for_the_web_and_the_worker(tls_redis, live_server, settings, monkeypatch, tmp_path):
    settings.REDIS_URL = tls_redis
    queue_url = redis_url_with_timeouts(tls_redis, 0.5, 1.0)
    settings.RQ_QUEUES = {name: {**config, "URL": queue_url} for name, config in settings.RQ_QUEUES.items()}
    monkeypatch.setattr(connections, "_connections", {})
    monkeypatch.setattr(connections, "_queues", {})

    task_id = create_task(live_server.url, 0)
    worker = manage_py(
        "rqworker", "default", "--burst", env=child_env(REDIS_URL=tls_redis), log_path=tmp_path / "w.log"
    )
    try:
        assert worker.wait(timeout=60) == 0, (tmp_path / "w.log").read_text()
    finally:
        stop(worker)
    assert task_status(live_server.url, task_id)["task_status"] == "finished"


def test_a_wrong_password_is_a_503_not_a_crash(tls_redis, live_server, settings, monkeypatch):
    wrong = tls_redis.replace(PASSWORD, "wrong-password")
    settings.RQ_QUEUES = {
        name: {**config, "URL": redis_url_with_timeouts(wrong, 0.5, 1.0)} for name, config in settings.RQ_QUEUES.items()
    }
    monkeypatch.setattr(connections, "_connections", {})
    monkeypatch.setattr(connections, "_queues", {})
    from tests.support.http import request

    reply = request(f"{live_server.url}/tasks", "POST", {"type": 1})
    assert reply.status == 503
    assert reply.body["status"] == "error"
