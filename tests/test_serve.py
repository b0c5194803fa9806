"""The production server's supervisor (taskqueue_site/serve.py): connections shared out evenly,
a dead worker replaced, SIGTERM stopping everything. Real processes, a real redis-server."""

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tasks_app.management.commands.runstack import descendants
from tests.support.processes import (
    PROJECT_ROOT,
    child_env,
    free_port,
    redis_server,
    start_asgi_server,
    stop,
    wait_until,
)


@pytest.fixture
def server_with(tmp_path):
    """Start the site under `python -m taskqueue_site.serve ... --workers 2 <options>`; (process, port)."""
    with contextlib.ExitStack() as started:

        def start(*options: str) -> tuple[subprocess.Popen, int]:
            redis_port, _redis = started.enter_context(redis_server(tmp_path / "redis"))
            env = child_env(REDIS_URL=f"redis://127.0.0.1:{redis_port}/0")
            process, base_url = start_asgi_server(env, tmp_path / "web.log", "--workers", "2", *options)
            started.callback(stop, process)
            return process, int(base_url.rsplit(":", 1)[1])

        yield start


@pytest.fixture
def server(server_with):
    return server_with()


def workers_of(pid: int) -> list[int]:
    """The server's worker processes (multiprocessing's spawned children, not its resource tracker)."""
    found = []
    for child in descendants(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            found.append(child)
    return found


def established_sockets(port: int) -> set[str]:
    """Inodes of the established TCP connections whose local port is `port` (Linux /proc/net/tcp)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def connections_held(pid: int, port: int) -> int:
    wanted = {f"socket:[{inode}]" for inode in established_sockets(port)}
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            held += os.readlink(f"/proc/{pid}/fd/{fd}") in wanted
        except OSError:
            continue
    return held


def open_keep_alive_clients(port: int, count: int) -> list[http.client.HTTPConnection]:
    """Connect `count` clients at once, then make one request on each and keep it open."""
    clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(count)]
    for client in clients:
        client.connect()
    for client in clients:
        client.request("GET", "/healthz")
        response = client.getresponse()
        response.read()
        assert response.status == 200
    return clients


def test_keep_alive_connections_are_shared_evenly_between_the_workers(server):
    process, port = server
    workers = wait_until(lambda: len(found := workers_of(process.pid)) == 2 and found, 10, "two workers")
    clients = open_keep_alive_clients(port, 16)
    try:
        # uvicorn's own supervisor leaves this to whichever worker wakes first: 13/3, even 16/0.
        assert sorted(connections_held(pid, port) for pid in workers) == [8, 8]
    finally:
        for client in clients:
            client.close()


def test_a_worker_that_dies_is_replaced_and_the_site_keeps_answering(server):
    process, port = server
    first, second = wait_until(lambda: len(found := workers_of(process.pid)) == 2 and found, 10, "two workers")
    os.kill(first, signal.SIGKILL)
    replaced = wait_until(
        lambda: len(found := workers_of(process.pid)) == 2 and first not in found and found, 20, "a new worker"
    )
    assert second in replaced
    for client in open_keep_alive_clients(port, 8):
        client.close()


def test_sigterm_stops_the_server_and_every_worker(server):
    process, _port = server
    workers = wait_until(lambda: len(found := workers_of(process.pid)) == 2 and found, 10, "two workers")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_workers_that_retire_drop_no_connection(server_with):
    """--limit-max-requests makes workers stop and be replaced all the time; no client notices."""
    _process, port = server_with("--limit-max-requests", "20")
    for _ in range(200):  # a new connection each time: ten generations of workers
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        client.request("GET", "/healthz")
        assert client.getresponse().status == 200
        client.close()


def test_sighup_replaces_every_worker(server):
    process, port = server
    before = wait_until(lambda: len(found := workers_of(process.pid)) == 2 and found, 10, "two workers")
    process.send_signal(signal.SIGHUP)
    wait_until(lambda: len(found := workers_of(process.pid)) == 2 and not set(found) & set(before), 30, "new workers")
    for client in open_keep_alive_clients(port, 4):
        client.close()


def test_connections_that_have_sent_nothing_yet_survive_a_restart(server):
    """Closing them would reset a request already on its way; they go to the new workers instead."""
    process, port = server
    before = wait_until(lambda: len(found := workers_of(process.pid)) == 2 and found, 10, "two workers")
    clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(4)]
    try:
        for client in clients:
            client.connect()
        wait_until(lambda: sum(connections_held(pid, port) for pid in before) == 4, 10, "the workers to hold them")
        process.send_signal(signal.SIGHUP)
        wait_until(
            lambda: len(found := workers_of(process.pid)) == 2 and not set(found) & set(before), 30, "new workers"
        )
        for client in clients:
            client.request("GET", "/healthz")
            assert client.getresponse().status == 200
    finally:
        for client in clients:
            client.close()


def test_a_restart_serves_at_once_while_old_workers_finish_their_streams(server):
    """SIGHUP with an event stream open on each worker: replacements start at once, beside them."""
    process, port = server
    before = wait_until(lambda: len(found := workers_of(process.pid)) == 2 and found, 10, "two workers")
    poster = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    poster.request("POST", "/tasks", body=b'{"type": 1}', headers={"Content-Type": "application/json"})
    reply = poster.getresponse()
    assert reply.status == 202
    task_id = json.loads(reply.read())["data"]["task_id"]  # no worker runs it: its stream stays open
    poster.close()
    streams = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(2)]
    try:
        for stream in streams:
            stream.connect()
        for stream in streams:
            stream.request("GET", f"/tasks/{task_id}/events")
            assert stream.getresponse().status == 200
        assert sorted(connections_held(pid, port) for pid in before) == [1, 1]

        process.send_signal(signal.SIGHUP)
        wait_until(lambda: len(set(workers_of(process.pid)) - set(before)) == 2, 15, "two new workers")
        for client in open_keep_alive_clients(port, 4):
            client.close()
        assert set(before) <= set(workers_of(process.pid))  # the old ones still finish their streams
    finally:
        for stream in streams:
            stream.close()
    wait_until(lambda: not set(before) & set(workers_of(process.pid)), 15, "the old workers to end")


def test_an_application_that_cannot_start_stops_the_server(tmp_path):
    command = [sys.executable, "-m", "taskqueue_site.serve", "taskqueue_site.asgi:no_such_application"]
    command += ["--host", "127.0.0.1", "--port", str(free_port()), "--workers", "2"]
    process = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.wait(timeout=60) == 3  # uvicorn's "could not start", not a restart loop
    finally:
        stop(process)
