"""/healthz and `manage.py checkworker` against a real redis-server and real workers."""

import subprocess
import sys
import time

from rq import Queue
from rq.serializers import JSONSerializer

from tests.support.http import request
from tests.support.processes import PROJECT_ROOT, child_env, free_port, wait_until


def health(base_url: str) -> dict:
    reply = request(f"{base_url}/healthz")
    assert reply.status == 200, reply.body
    return reply.body["data"]


def check_worker(redis_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "checkworker"],
        cwd=PROJECT_ROOT,
        env=child_env(REDIS_URL=redis_url),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_healthz_counts_waiting_jobs_and_live_workers(live_server, real_redis, start_worker):
    queue = Queue("low", connection=real_redis.connection, serializer=JSONSerializer)
    for _ in range(2):
        queue.enqueue("tests.support.jobs.touch", "/dev/null")
    assert health(live_server.url) == {"redis": "ok", "queues": {"high": 0, "default": 0, "low": 2}, "workers": 0}

    start_worker(burst=False)
    start_worker(burst=False)
    wait_until(lambda: health(live_server.url)["workers"] == 2, 30, "two live workers")
    wait_until(lambda: health(live_server.url)["queues"]["low"] == 0, 30, "the workers to drain the queue")


def test_checkworker_passes_only_while_a_worker_on_this_host_is_alive(real_redis, start_worker):
    result = check_worker(real_redis.url)
    assert result.returncode == 1
    assert "no live worker on" in result.stderr

    worker = start_worker(burst=False)
    result = wait_until(
        lambda: (result := check_worker(real_redis.url)).returncode == 0 and result, 30, "checkworker to pass"
    )
    assert f"pid {worker.pid} alive" in result.stdout

    worker.kill()  # SIGKILL: its key stays in Redis for minutes, but the process is gone
    worker.wait()
    result = check_worker(real_redis.url)
    assert result.returncode == 1, result.stdout


def test_checkworker_fails_fast_when_redis_is_down():
    started = time.monotonic()
    result = check_worker(f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 1
    assert "Redis cannot be reached" in result.stderr
    assert time.monotonic() - started < 30  # mostly Django's start-up
