"""`manage.py runstack` (what `make run` ends with) starts Redis, web and worker, and stops them all."""

import signal
import socket

from tests.support.http import create_task, task_status
from tests.support.processes import child_env, free_port, manage_py, stop, wait_until


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_runstack_serves_runs_jobs_and_stops_cleanly_on_ctrl_c(tmp_path):
    web_port, redis_port = free_port(), free_port()
    log = tmp_path / "runstack.log"
    env = child_env(TASK_UNIT_SECONDS="0.2", PYTHONUNBUFFERED="1")
    env.pop("REDIS_URL", None)
    stack = manage_py(
        "runstack",
        f"--port={web_port}",
        f"--redis-port={redis_port}",
        f"--data-dir={tmp_path / 'redis'}",
        env=env,
        log_path=log,
    )
    try:
        wait_until(lambda: "taskqueue is running at" in log.read_text() or stack.poll() is not None, 60, "the stack")
        assert stack.poll() is None, log.read_text()
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
