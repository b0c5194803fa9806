"""Faults survived on purpose: Redis restarted (with its data or empty), Redis down and back, the web restarted.

Each test prints its figure (time to recover, jobs lost), which README's reliability table quotes.
"""

import threading
import time

import pytest
from redis import Redis
from rq import Worker
from rq.serializers import JSONSerializer

from taskqueue_site.settings import redis_url_with_timeouts
from tasks_app import connections
from tests.integration.test_health import check_worker, health
from tests.support.http import create_task, request, task_status
from tests.support.processes import (
    child_env,
    manage_py,
    redis_server,
    start_asgi_server,
    stop,
    wait_until,
)


@pytest.fixture
def point_site_at(settings, monkeypatch):
    """Point the in-process site (live_server) at a given Redis port."""

    def point(port: int) -> str:
        url = f"redis://127.0.0.1:{port}/0"
        settings.REDIS_URL = url
        queue_url = redis_url_with_timeouts(url, 0.5, 1.0)
        settings.RQ_QUEUES = {name: {**config, "URL": queue_url} for name, config in settings.RQ_QUEUES.items()}
        monkeypatch.setattr(connections, "_connections", {})
        monkeypatch.setattr(connections, "_queues", {})
        return url

    return point


def test_jobs_queued_before_a_redis_restart_survive_it(live_server, tmp_path, point_site_at):
    data_dir = tmp_path / "redis"
    durable = ("--appendonly", "yes", "--appendfsync", "always")
    with redis_server(data_dir, *durable) as (port, _):
        url = point_site_at(port)
        queued = [create_task(live_server.url, 0) for _ in range(50)]
    # The server is gone (SIGTERM). Start it again on the same port and data.
    with redis_server(data_dir, *durable, port=port):
        assert Redis.from_url(url).llen("rq:queue:default") == 50
        worker = manage_py("rqworker", "default", "--burst", env=child_env(REDIS_URL=url), log_path=tmp_path / "w.log")
        try:
            assert worker.wait(timeout=60) == 0
        finally:
            stop(worker)
        statuses = {task_status(live_server.url, task_id)["task_status"] for task_id in queued}
    print(f"\nredis restart: {len(queued)} queued before, lost {0 if statuses == {'finished'} else '?'}")
    assert statuses == {"finished"}


def test_redis_down_gives_fast_503s_and_everything_recovers_without_restarts(live_server, tmp_path, point_site_at):
    data_dir = tmp_path / "redis"
    worker = None
    try:
        with redis_server(data_dir) as (port, _):
            url = point_site_at(port)
            worker = manage_py("rqworker", "high", "default", "low", env=child_env(REDIS_URL=url))
            first = create_task(live_server.url, 0)
            wait_until(lambda: task_status(live_server.url, first)["task_status"] == "finished", 20, "a first job")

        # Redis is down now. The site answers 503 fast; the worker keeps waiting.
        for attempt in (
            lambda: request(f"{live_server.url}/tasks", "POST", {"type": 1}),
            lambda: request(f"{live_server.url}/tasks/{first}"),
        ):
            started = time.monotonic()
            reply = attempt()
            assert reply.status == 503 and reply.body["status"] == "error"
            assert time.monotonic() - started < 2
        time.sleep(2)  # let the worker notice the outage before Redis returns
        assert worker.poll() is None, "the worker must wait for Redis, not exit"

        with redis_server(data_dir, port=port):
            back = time.monotonic()
            task_id = wait_until(lambda: accepted(live_server.url), 10, "the site to accept work again")
            wait_until(
                lambda: task_status(live_server.url, task_id)["task_status"] == "finished",
                90,
                "the same worker to run it",
                interval=0.2,
            )
            recovery = time.monotonic() - back
            print(f"\nredis down and back: a new job finished {recovery:.1f} s after Redis returned, no restarts")
            assert worker.poll() is None
    finally:
        if worker is not None:
            stop(worker)


def accepted(base_url: str) -> str | None:
    reply = request(f"{base_url}/tasks", "POST", {"type": 0})
    return reply.body["data"]["task_id"] if reply.status == 202 else None


def test_running_workers_register_again_after_redis_restarts_empty(live_server, tmp_path, point_site_at):
    data_dir = tmp_path / "redis"  # no append-only file, no snapshots: the restart loses everything
    workers = []
    try:
        with redis_server(data_dir) as (port, _):
            url = point_site_at(port)
            env = child_env(REDIS_URL=url, WORKER_HEARTBEAT_SECONDS="1", TASK_UNIT_SECONDS="8")
            for index in range(2):
                workers.append(
                    manage_py("rqworker", "high", "default", "low", env=env, log_path=tmp_path / f"w{index}.log")
                )
            wait_until(lambda: health(live_server.url)["workers"] == 2, 30, "two live workers")
            long_job = create_task(live_server.url, 1)
            wait_until(lambda: task_status(live_server.url, long_job)["task_status"] == "started", 20, "the long job")

        with redis_server(data_dir, port=port):
            back = time.monotonic()
            wait_until(lambda: health(live_server.url)["workers"] == 2, 10, "both workers registered again")
            print(f"\nredis restarted empty: both workers registered again {time.monotonic() - back:.1f} s after")
            assert check_worker(url).returncode == 0
            by_state = {
                worker.get_state(): worker
                for worker in Worker.all(connection=Redis.from_url(url), serializer=JSONSerializer)
            }
            assert set(by_state) == {"busy", "idle"}
            assert by_state["busy"].get_current_job_id() == long_job

            # The worker that was busy takes new work once its job ends: stop the other one first.
            stop(next(process for process in workers if process.pid == by_state["idle"].pid))
            new_jobs = [create_task(live_server.url, 0) for _ in range(3)]
            statuses = lambda: {task_status(live_server.url, task_id)["task_status"] for task_id in new_jobs}  # noqa: E731
            wait_until(lambda: statuses() == {"finished"}, 30, "the new jobs to finish")
    finally:
        for worker in workers:
            stop(worker)


def test_restarting_the_web_under_load_loses_no_acknowledged_job(tmp_path):
    with redis_server(tmp_path / "redis") as (port, _):
        url = f"redis://127.0.0.1:{port}/0"
        env = child_env(REDIS_URL=url)
        web, base_url = start_asgi_server(env, tmp_path / "web1.log")
        acknowledged, failed = [], []
        stop_sending = threading.Event()

        def client():
            while not stop_sending.is_set():
                try:
                    reply = request(f"{base_url}/tasks", "POST", {"type": 0}, timeout=5)
                except OSError:  # the server is restarting: nothing was acknowledged
                    failed.append(None)
                    time.sleep(0.02)
                    continue
                if reply.status == 202:
                    acknowledged.append(reply.body["data"]["task_id"])
                else:
                    failed.append(reply.status)

        clients = [threading.Thread(target=client) for _ in range(8)]
        for thread in clients:
            thread.start()
        try:
            wait_until(lambda: len(acknowledged) >= 100, 30, "load to build up")
            stop(web)  # SIGTERM: uvicorn finishes the requests in flight
            web, _ = start_asgi_server(env, tmp_path / "web2.log", port=int(base_url.rsplit(":", 1)[1]))
            restarted = len(acknowledged)
            wait_until(lambda: len(acknowledged) >= restarted + 100, 30, "load after the restart")
        finally:
            stop_sending.set()
            for thread in clients:
                thread.join()
            stop(web)
        worker = manage_py("rqworker", "default", "--burst", env=env, log_path=tmp_path / "worker.log")
        try:
            assert worker.wait(timeout=120) == 0
        finally:
            stop(worker)
        connection = Redis.from_url(url)
        lost = [task_id for task_id in acknowledged if connection.hget(f"rq:job:{task_id}", "status") != b"finished"]
        print(
            f"\nweb restart under load: {len(acknowledged)} acknowledged, "
            f"{len(failed)} failed while down, lost {len(lost)}"
        )
        assert lost == []
