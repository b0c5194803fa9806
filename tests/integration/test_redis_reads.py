"""The status read's own connection per thread (tasks_app/redis_reads.py), against real redis-servers."""

import os
import signal
import threading
import time

import pytest
from redis import Redis

from taskqueue_site.settings import redis_url_with_timeouts
from tasks_app import services
from tests.support.processes import redis_server, wait_until

DURABLE = ("--appendonly", "yes", "--appendfsync", "always")


@pytest.fixture
def site_redis(settings, monkeypatch, tmp_path):
    """A redis-server of the test's own (it is stopped, restarted or paused), with the site pointed at it."""

    def point(port: int) -> Redis:
        queue_url = redis_url_with_timeouts(f"redis://127.0.0.1:{port}/0", 0.5, 1.0)
        settings.RQ_QUEUES = {name: {**config, "URL": queue_url} for name, config in settings.RQ_QUEUES.items()}
        monkeypatch.setattr(services, "_connections", {})
        return Redis(port=port)

    return point


def status_read_connections(admin: Redis) -> list[dict]:
    """The clients connected to the server, less the admin client asking."""
    return [client for client in admin.client_list() if client["id"] != str(admin.client_id())]


def test_each_thread_keeps_one_connection_for_its_status_reads(tmp_path, site_redis):
    with redis_server(tmp_path / "redis") as (port, _process):
        admin = site_redis(port)
        task_id = services.enqueue_task(0)
        services.get_connection().connection_pool.disconnect()  # only status reads from here on
        for _ in range(50):
            assert services.get_task_status(task_id).task_status == "queued"
        wait_until(lambda: len(status_read_connections(admin)) == 1, 5, "one connection for 50 reads")
        (kept,) = status_read_connections(admin)

        read, finish = threading.Event(), threading.Event()

        def other_thread() -> None:
            services.get_task_status(task_id)
            read.set()
            finish.wait(10)

        thread = threading.Thread(target=other_thread)
        thread.start()
        try:
            assert read.wait(10)
            # Another thread has a connection of its own, never this one's.
            wait_until(lambda: len(status_read_connections(admin)) == 2, 5, "a second thread's connection")
        finally:
            finish.set()
            thread.join(10)
        for _ in range(50):
            services.get_task_status(task_id)
        assert kept["id"] in {client["id"] for client in status_read_connections(admin)}


def test_a_kept_connection_gone_stale_is_replaced_without_an_error(tmp_path, site_redis):
    data_dir = tmp_path / "redis"
    with redis_server(data_dir, *DURABLE) as (port, _process):
        admin = site_redis(port)
        task_id = services.enqueue_task(0)
        assert services.get_task_status(task_id).task_status == "queued"
        # Redis closes the connection (an idle timeout, an operator's CLIENT KILL).
        admin.client_kill_filter(skipme=True, _type="normal")
        assert services.get_task_status(task_id).task_status == "queued"
    # Redis restarts on the same port and data: the kept connection is dead, the read is not.
    with redis_server(data_dir, *DURABLE, port=port):
        assert services.get_task_status(task_id).task_status == "queued"


def test_redis_down_is_a_fast_queue_unavailable_for_a_thread_with_a_kept_connection(tmp_path, site_redis):
    with redis_server(tmp_path / "redis") as (port, _process):
        site_redis(port)
        task_id = services.enqueue_task(0)
        services.get_task_status(task_id)
    started = time.monotonic()
    with pytest.raises(services.QueueUnavailable):
        services.get_task_status(task_id)  # the kept connection fails, then so does a new one
    assert time.monotonic() - started < 1


def test_a_hung_redis_costs_one_socket_timeout_not_two(tmp_path, site_redis):
    with redis_server(tmp_path / "redis") as (port, process):
        site_redis(port)
        task_id = services.enqueue_task(0)
        services.get_task_status(task_id)
        os.kill(process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(services.QueueUnavailable):
                services.get_task_status(task_id)
            waited = time.monotonic() - started
        finally:
            os.kill(process.pid, signal.SIGCONT)
        assert 0.9 < waited < 1.9  # socket_timeout is 1 s: the timeout is not retried
        assert services.get_task_status(task_id).task_status == "queued"  # and the next read reconnects


def test_a_refused_command_leaves_the_connection_usable(tmp_path, site_redis):
    with redis_server(tmp_path / "redis") as (port, _process):
        admin = site_redis(port)
        task_id = services.enqueue_task(0)
        services.get_connection().connection_pool.disconnect()
        admin.rpush(f"rq:job:{'0' * 8}-0000-4000-8000-{'0' * 12}", "not a hash")
        services.get_task_status(task_id)
        (kept,) = status_read_connections(admin)

        with pytest.raises(services.TaskNotFound):  # a key that is not a job's hash is no job
            services.get_task_status(f"{'0' * 8}-0000-4000-8000-{'0' * 12}")

        assert services.get_task_status(task_id).task_status == "queued"
        assert [client["id"] for client in status_read_connections(admin)] == [kept["id"]]
