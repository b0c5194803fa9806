"""The status read's own connection per thread (tasks_app/redis_reads.py), against real redis-servers."""

import contextlib
import multiprocessing
import os
import signal
import socket
import threading
import time

import pytest
from redis import Redis
from redis.exceptions import ResponseError
from rq.job import Job
from rq.serializers import JSONSerializer

from taskqueue_site.settings import redis_url_with_timeouts
from tasks_app import services
from tasks_app.workers import InProcessJSONWorker
from tests.support.jobs import explode
from tests.support.processes import redis_server, wait_until

DURABLE = ("--appendonly", "yes", "--appendfsync", "always")
NOT_A_JOB = f"{'0' * 8}-0000-4000-8000-{'0' * 12}"


@pytest.fixture
def site_redis(settings, monkeypatch):
    """Point the site at a redis-server of the test's own (stopped, restarted or paused); return an admin client."""

    def point(port: int, protocol: int | None = None) -> Redis:
        url = f"redis://127.0.0.1:{port}/0" + (f"?protocol={protocol}" if protocol else "")
        queue_url = redis_url_with_timeouts(url, 0.5, 1.0)
        settings.RQ_QUEUES = {name: {**config, "URL": queue_url} for name, config in settings.RQ_QUEUES.items()}
        monkeypatch.setattr(services, "_connections", {})
        return Redis(host="127.0.0.1", port=port)

    return point


def read_connections(admin: Redis) -> list[dict]:
    """The clients connected to the server, less the admin client asking."""
    return [client for client in admin.client_list() if client["id"] != str(admin.client_id())]


def only_status_reads(admin: Redis) -> dict:
    """Close the site's pooled connections (the enqueue's); return the one connection status reads keep."""
    services.get_connection().connection_pool.disconnect()
    wait_until(lambda: len(read_connections(admin)) == 1, 5, "one connection left, the status read's")
    return read_connections(admin)[0]


@pytest.mark.parametrize("protocol", [2, 3])
def test_each_thread_keeps_one_connection_for_its_status_reads(tmp_path, site_redis, protocol):
    with redis_server(tmp_path / "redis") as (port, _process):
        admin = site_redis(port, protocol)
        task_id = services.enqueue_task(0)
        assert services.get_task_status(task_id).task_status == "queued"
        kept = only_status_reads(admin)
        for _ in range(50):
            assert services.get_task_status(task_id).task_status == "queued"
        assert [client["id"] for client in read_connections(admin)] == [kept["id"]]

        read_on_a_connection_of_its_own(threading, admin, task_id)  # another thread, never this one's
        # Its connection closes when the thread ends; this thread's stays.
        wait_until(lambda: len(read_connections(admin)) == 1, 5, "the ended thread's connection to close")
        assert services.get_task_status(task_id).task_status == "queued"
        assert [client["id"] for client in read_connections(admin)] == [kept["id"]]


@pytest.mark.parametrize("protocol", [2, 3])
def test_an_ended_jobs_latest_result_is_read_on_the_kept_connection(tmp_path, site_redis, protocol, db):
    with redis_server(tmp_path / "redis") as (port, _process):
        admin = site_redis(port, protocol)
        finished = services.enqueue_task(0)
        failed = services.enqueue_call(explode, ("boom",), kind="sleep", description="explodes")
        admin.hset(f"rq:job:{failed}", "retries_left", 0)  # its one attempt fails it for good
        InProcessJSONWorker(["default"], connection=Redis(host="127.0.0.1", port=port)).work(burst=True)
        before = {client["id"] for client in read_connections(admin)}

        for task_id, status in ((finished, "finished"), (failed, "failed")):
            answer = services.get_task_status(task_id)
            rqs_reading = services.status_of(Job.fetch(task_id, connection=admin, serializer=JSONSerializer))
            assert answer == rqs_reading and answer.task_status == status
        assert services.get_task_status(finished).task_result is True
        assert services.get_task_status(failed).error == "ValueError: boom"
        # Hashes and results alike on one new connection, this thread's (the pool's was there before).
        assert len({client["id"] for client in read_connections(admin)} - before) == 1


def test_a_forked_child_reads_on_a_connection_of_its_own(tmp_path, site_redis):
    with redis_server(tmp_path / "redis") as (port, _process):
        admin = site_redis(port)
        task_id = services.enqueue_task(0)
        services.get_task_status(task_id)
        kept = only_status_reads(admin)

        # Not the parent's socket, which both would otherwise write to and read from.
        child = read_on_a_connection_of_its_own(multiprocessing.get_context("fork"), admin, task_id)
        assert child.exitcode == 0
        assert services.get_task_status(task_id).task_status == "queued"
        assert kept["id"] in {client["id"] for client in read_connections(admin)}


def read_on_a_connection_of_its_own(context, admin: Redis, task_id: str) -> threading.Thread | multiprocessing.Process:
    """Read a status in another thread or forked process (context: threading or a multiprocessing
    context), and check that it holds a second connection while it lives; return it, ended."""
    read, finish = context.Event(), context.Event()

    def reader() -> None:
        if services.get_task_status(task_id).task_status == "queued":
            read.set()
        finish.wait(10)

    other = (context.Thread if context is threading else context.Process)(target=reader)
    other.start()
    try:
        assert read.wait(10)
        wait_until(lambda: len(read_connections(admin)) == 2, 5, "the other reader's own connection")
    finally:
        finish.set()
        other.join(10)
    return other


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


def test_a_new_connection_that_fails_is_not_tried_again(site_redis):
    """Only a connection that served before may have gone stale; a new one failing means Redis is down."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def close_each_connection() -> None:
        while True:
            try:
                connection, _address = listener.accept()
            except OSError:
                return
            accepted.append(connection)
            connection.close()

    threading.Thread(target=close_each_connection, daemon=True).start()
    try:
        site_redis(listener.getsockname()[1])
        with pytest.raises(services.QueueUnavailable):
            services.get_task_status(NOT_A_JOB)
        assert len(accepted) == 1
    finally:
        listener.close()


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
        admin.rpush(f"rq:job:{NOT_A_JOB}", "not a hash")
        services.get_task_status(task_id)
        kept = only_status_reads(admin)

        with pytest.raises(services.TaskNotFound):  # a key that is not a job's hash is no job
            services.get_task_status(NOT_A_JOB)

        assert services.get_task_status(task_id).task_status == "queued"
        assert [client["id"] for client in read_connections(admin)] == [kept["id"]]


def test_a_busy_redis_is_a_queue_unavailable_not_a_missing_task(tmp_path, site_redis):
    with redis_server(tmp_path / "redis", "--busy-reply-threshold", "100") as (port, _process):
        admin = site_redis(port)
        task_id = services.enqueue_task(0)
        services.get_task_status(task_id)
        script = threading.Thread(target=run_endless_script, args=(port,))
        script.start()
        try:
            wait_until(lambda: answers_busy(admin), 5, "Redis to answer BUSY while the script runs")
            with pytest.raises(services.QueueUnavailable, match="BUSY"):
                services.get_task_status(task_id)
        finally:
            with contextlib.suppress(ResponseError):
                admin.script_kill()
            script.join(10)
        assert services.get_task_status(task_id).task_status == "queued"


def run_endless_script(port: int) -> None:
    with contextlib.suppress(ResponseError):  # "Script killed by user"
        Redis(host="127.0.0.1", port=port).eval("while true do end", 0)


def answers_busy(admin: Redis) -> bool:
    try:
        admin.ping()
    except ResponseError as exc:
        return str(exc).startswith("BUSY")
    return False
