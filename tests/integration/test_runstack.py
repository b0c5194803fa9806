"""`manage.py runstack` (what `make run` ends with) starts Redis, web and worker, and stops them all."""

import signal
import socket
from pathlib import Path

from tasks_app.management.commands.runstack import descendants
from tests.support.http import create_task, task_status
from tests.support.processes import child_env, free_port, manage_py, stop, wait_until


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start_stack(
    tmp_path,
    web_port: int,
    *options: str,
    redis_port: int | None = None,
    ready_within: float = 60,
    **env_overrides: str,
):
    """`manage.py runstack` with a private Redis and web port; wait until it says it runs. Returns (process, log)."""
    log = tmp_path / "runstack.log"
    env = child_env(PYTHONUNBUFFERED="1", **env_overrides)
    env.pop("REDIS_URL", None)
    stack = manage_py(
        "runstack",
        f"--port={web_port}",
        f"--redis-port={redis_port or free_port()}",
        f"--data-dir={tmp_path / 'redis'}",
        *options,
        env=env,
        log_path=log,
    )
    try:
        ready = lambda: "taskqueue is running at" in log.read_text() or stack.poll() is not None  # noqa: E731
        wait_until(ready, ready_within, "the stack")
        assert stack.poll() is None, log.read_text()
    except BaseException:
        stop(stack)
        raise
    return stack, log


def test_runstack_serves_runs_jobs_and_stops_cleanly_on_ctrl_c(tmp_path):
    web_port, redis_port = free_port(), free_port()
    stack, log = start_stack(tmp_path, web_port, redis_port=redis_port, TASK_UNIT_SECONDS="0.2")
    try:
        base_url = f"http://127.0.0.1:{web_port}"
        assert f"taskqueue is running at {base_url}/" in log.read_text()

        task_id = create_task(base_url, 1)
        final = wait_until(
            lambda: (data := task_status(base_url, task_id))["task_status"] == "finished" and data, 30, "the job"
        )
        assert final["task_result"] is True
        assert (tmp_path / "redis" / "appendonlydir").is_dir()  # the private Redis keeps its data there

        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=30) == 0, log.read_text()
        assert not port_open(web_port)
        assert not port_open(redis_port)
        output = log.read_text()
        for name in ("worker-1", "web", "redis"):
            assert f"stopped {name}" in output
    finally:
        stop(stack)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its exit status is left to collect


def test_ctrl_c_during_a_running_job_leaves_no_process_behind(tmp_path):
    """The job's work horse runs in a process group of its own; stopping the stack stops it too."""
    web_port = free_port()
    # a type-1 task runs 30 s
    stack, log = start_stack(tmp_path, web_port, "--stop-grace=1", TASK_UNIT_SECONDS="30")
    try:
        base_url = f"http://127.0.0.1:{web_port}"
        task_id = create_task(base_url, 1)
        wait_until(lambda: task_status(base_url, task_id)["task_status"] == "started", 30, "the job to start")
        started = descendants(stack.pid)
        # The stack's own lookup of its processes is what it stops, so check it finds them all:
        # Redis, the web server, the worker and the work horse running the job (a fork of it).
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ") for pid in started]
        assert any(b"redis-server" in command for command in commands), commands
        assert any(b"runserver" in command for command in commands), commands
        assert sum(b"rqworker" in command for command in commands) >= 2, commands

        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=30) == 0, log.read_text()

        assert wait_until(lambda: not [pid for pid in started if alive(pid)], 5, "every process to end")
    finally:
        stop(stack)


def test_a_server_that_answers_with_an_error_still_counts_as_started(tmp_path):
    """HOST=0.0.0.0 (or a host not in DJANGO_ALLOWED_HOSTS) makes / answer 400; the stack is up all the same."""
    stack, _log = start_stack(tmp_path, free_port(), ready_within=25, DJANGO_ALLOWED_HOSTS="example.org")
    try:
        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=30) == 0
    finally:
        stop(stack)


def test_runstack_refuses_a_busy_redis_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        env = child_env()
        env.pop("REDIS_URL", None)
        log = tmp_path / "runstack.log"
        stack = manage_py("runstack", f"--redis-port={port}", f"--port={free_port()}", env=env, log_path=log)
        try:
            assert stack.wait(timeout=30) != 0
        finally:
            stop(stack)
    assert f"port {port} is already in use" in log.read_text()
