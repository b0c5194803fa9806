"""Start and stop the real processes the tests use: redis-server, rqworker, the whole stack."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Ask the kernel for a free loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float, message: str, interval: float = 0.05) -> object:
    """Poll condition until it returns something truthy, or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def redis_pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def descendants(pid: int) -> list[int]:
    """The process ids of a process's children, their children and so on (Linux /proc).

    Each thread lists the children it forked: all threads are read, not only the main one.
    """
    children = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):  # the thread or the process has just ended
            children += [int(child) for child in listing.read_text().split()]
    return [descendant for child in children for descendant in (child, *descendants(child))]


def stop(process: subprocess.Popen, grace: float = 10) -> None:
    """Stop a process started with start_new_session=True, and everything it forked.

    RQ's work horse leads a process group of its own, so it is found and killed by pid too.
    """
    children = descendants(process.pid)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process and all it forked at once, as when its machine dies: nothing can clean up."""
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=10)


@contextlib.contextmanager
def redis_server(data_dir: Path, *extra_args: str, port: int | None = None) -> Iterator[tuple[int, subprocess.Popen]]:
    """Run a private redis-server on a free loopback port (or `port`); yield (port, process)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir), "--save", ""]
    if "--appendonly" not in extra_args:
        command += ["--appendonly", "no"]
    command += list(extra_args)
    log = open(data_dir / "redis.log", "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: redis_pings(port) or process.poll() is not None, 10, f"redis-server on port {port}")
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {(data_dir / 'redis.log').read_text()}")
        yield port, process
    finally:
        stop(process)
        log.close()


def manage_py(*args: str, env: dict[str, str], log_path: Path | None = None) -> subprocess.Popen:
    """Start `python manage.py ARGS` from the project root in its own process group."""
    output = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the process
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@contextlib.contextmanager
def make_run(log_path: Path, **env: str) -> Iterator[subprocess.Popen]:
    """Run `make run` (PORT, REDIS_PORT, REDIS_DIR... in `env`) with a Redis of its own; stop all it started."""
    environment = child_env(PYTHONUNBUFFERED="1", **env)
    environment.pop("REDIS_URL", None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["make", "run"],
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop(process)


def child_env(**overrides: str) -> dict[str, str]:
    """The environment for a child Django process: ours, minus the test runner's settings tweaks."""
    # Not the test runner's own variables, nor the browser tests' DJANGO_ALLOW_ASYNC_UNSAFE.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PYTEST_") and key != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    env["DJANGO_SETTINGS_MODULE"] = "taskqueue_site.settings"
    env.setdefault("TASKS_RATE_LIMIT", "off")  # tests send many tasks from one address
    env.setdefault("CONFIRMATION_EMAILS_PER_ADDRESS", "off")
    env.update(database_env())
    env.update(overrides)
    return env


def http_answers(url: str) -> bool:
    """Whether a server answers at `url` at all (an error status is an answer too)."""
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def start_asgi_server(
    env: dict[str, str],
    log_path: Path | None = None,
    *extra_args: str,
    port: int | None = None,
    access_log: bool = False,
) -> tuple[subprocess.Popen, str]:
    """Start the site under its production server (uvicorn) on a free port.

    Waits until it answers.
    """
    port = port or free_port()
    output = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the process
    command = [sys.executable, "-m", "uvicorn", "taskqueue_site.asgi:application", "--host", "127.0.0.1"]
    command += ["--port", str(port), *([] if access_log else ["--no-access-log"]), *extra_args]
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        # /healthz answers over plain HTTP whatever the settings (no HTTPS redirect, no static files).
        ready = base_url + "/healthz"
        wait_until(lambda: http_answers(ready) or process.poll() is not None, 60, "uvicorn to answer")
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {process.returncode}")
    except BaseException:
        stop(process)
        raise
    return process, base_url


def database_env() -> dict[str, str]:
    """DATABASE_URL of the database Django uses now: the test database once one is set up."""
    from django.conf import settings

    if not settings.configured:  # a script outside pytest: the children choose for themselves
        return {}
    database = settings.DATABASES["default"]
    name = str(database.get("NAME") or "")
    if database["ENGINE"] == "django.db.backends.postgresql":
        return {"DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{name}"}
    if database["ENGINE"] != "django.db.backends.sqlite3" or not name or name == ":memory:" or "mode=memory" in name:
        return {}
    return {"DATABASE_URL": f"sqlite:///{name}"}
