"""The production web server (uvicorn, as in compose.yml and the Dockerfile) on a free port."""

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from tests.support.processes import PROJECT_ROOT, free_port, start_asgi_server, stop, wait_until

PRODUCTION_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "test-only-3f9c1b7e5a2d8c4f6e0b9a7d5c3e1f8a6b4d2c0e9f7a5b3d1c8e6f4a2b0d9c7e5",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    # The image's own environment (Dockerfile; tests/test_compose.py checks that they match).
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072",
}
# The flags of the production command in compose.yml and the Dockerfile (tests/test_compose.py
# checks that they match); only the address and the worker count differ here.
PRODUCTION_FLAGS = [
    "--proxy-headers",
    "--no-server-header",
    "--timeout-graceful-shutdown",
    "30",
    # Beyond this many connections a worker answers 503 at once instead of running out of files.
    "--limit-concurrency",
    "800",
    "--timeout-keep-alive",
    "5",
    "--backlog",
    "2048",
    "--log-config",
    "taskqueue_site/uvicorn_logging.json",
]


def production_command(host: str, port: int, workers: int) -> list[str]:
    """The production command of compose.yml and the Dockerfile, run by this Python."""
    return [sys.executable, "-m", "uvicorn", "taskqueue_site.asgi:application", "--host", host, "--port", str(port)] + [
        "--workers",
        str(workers),
        *PRODUCTION_FLAGS,
    ]


def production_env(base: dict[str, str], directory: Path) -> dict[str, str]:
    """Production settings with a migrated SQLite database of their own in `directory`."""
    return migrated_database_env({**base, **PRODUCTION_ENV}, directory)


def migrated_database_env(base: dict[str, str], directory: Path) -> dict[str, str]:
    """`base` with DATABASE_URL pointing at a freshly migrated SQLite database in `directory`."""
    env = {**base, "DATABASE_URL": f"sqlite:///{directory / 'db.sqlite3'}"}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # the browser tests set it in this process; production never does
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return env


@contextlib.contextmanager
def uvicorn_server(env: dict[str, str], log_path: Path, *extra_args: str) -> Iterator[str]:
    """Run the production command (PRODUCTION_FLAGS, access log on) on a free loopback port; yield its URL."""
    process, base_url = start_asgi_server(env, log_path, *PRODUCTION_FLAGS, *extra_args, access_log=True)
    try:
        yield base_url
    finally:
        stop(process)


@contextlib.contextmanager
def in_process_asgi_server() -> Iterator[str]:
    """Django's ASGI application (and the static files) under uvicorn in a thread; yield its URL.

    In this process, so that the test's settings, database and Redis fixtures hold in the server.
    """
    port = free_port()
    application = ASGIStaticFilesHandler(get_asgi_application())
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 30, "uvicorn to start")
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
