"""`make run`: the Procfile through honcho starts Redis, the web, workers and the scheduler; Ctrl-C stops them all."""

import os
import signal
import socket
from pathlib import Path

from tests.support.http import create_task, request, task_status
from tests.support.processes import descendants, free_port, http_answers, make_run, wait_until


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its exit status is left to collect


def ctrl_c(process) -> None:
    """What a terminal does on Ctrl-C: SIGINT to the foreground process group (make and honcho)."""
    os.killpg(process.pid, signal.SIGINT)


def test_make_run_serves_runs_jobs_and_stops_everything_on_ctrl_c(tmp_path):
    web_port, redis_port, redis_dir = free_port(), free_port(), tmp_path / "redis"
    env = {"PORT": str(web_port), "REDIS_PORT": str(redis_port), "REDIS_DIR": str(redis_dir)}
    with make_run(tmp_path / "run.log", TASK_UNIT_SECONDS="0.2", **env) as run:
        base_url = f"http://127.0.0.1:{web_port}"
        wait_until(lambda: http_answers(base_url + "/") or run.poll() is not None, 90, "the page")
        assert run.poll() is None, (tmp_path / "run.log").read_text()

        task_id = create_task(base_url, 1)
        final = wait_until(
            lambda: (data := task_status(base_url, task_id))["task_status"] == "finished" and data, 30, "the job"
        )
        assert final["task_result"] is True
        delayed = request(f"{base_url}/tasks", "POST", {"type": 0, "delay": 1})  # moved to its queue by the scheduler
        assert delayed.status == 202, delayed.body
        delayed_id = delayed.body["data"]["task_id"]
        wait_until(lambda: task_status(base_url, delayed_id)["task_status"] == "finished", 30, "the delayed job")
        assert (redis_dir / "appendonlydir").is_dir()  # the private Redis keeps its data there

        started = descendants(run.pid)
        ctrl_c(run)
        run.wait(timeout=30)
        assert wait_until(lambda: not [pid for pid in started if alive(pid)], 10, "every process to end")
        assert not port_open(web_port)
        assert not port_open(redis_port)


def test_ctrl_c_during_a_running_job_leaves_no_process_behind(tmp_path):
    """The job's work horse runs in a process group of its own; stopping `make run` stops it too."""
    web_port = free_port()
    env = {"PORT": str(web_port), "REDIS_PORT": str(free_port()), "REDIS_DIR": str(tmp_path / "redis")}
    with make_run(tmp_path / "run.log", TASK_UNIT_SECONDS="30", **env) as run:  # a type-1 task runs 30 s
        base_url = f"http://127.0.0.1:{web_port}"
        wait_until(lambda: http_answers(base_url + "/") or run.poll() is not None, 90, "the page")
        task_id = create_task(base_url, 1)
        wait_until(lambda: task_status(base_url, task_id)["task_status"] == "started", 30, "the job to start")
        started = descendants(run.pid)
        # Redis, the web server, the scheduler, the worker and the work horse running the job (a fork of it).
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ") for pid in started]
        assert any(b"redis-server" in command for command in commands), commands
        assert any(b"uvicorn" in command for command in commands), commands
        assert sum(b"rqworker" in command for command in commands) >= 2, commands
        assert any(b"runscheduler" in command for command in commands), commands

        ctrl_c(run)
        run.wait(timeout=30)
        assert wait_until(lambda: not [pid for pid in started if alive(pid)], 10, "every process to end")


def test_make_run_stops_and_says_why_when_the_redis_port_is_taken(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        env = {"PORT": str(free_port()), "REDIS_PORT": str(port), "REDIS_DIR": str(tmp_path / "redis")}
        with make_run(tmp_path / "run.log", **env) as run:
            assert run.wait(timeout=60) != 0
    assert "Address already in use" in (tmp_path / "run.log").read_text()
