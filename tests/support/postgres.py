"""A private PostgreSQL cluster for the tests: Debian's server, a free port, stopped by process id.

Also a pytest plugin (pyproject's addopts load it with -p): `pytest --postgres` starts a cluster
before Django reads its settings and points DATABASE_URL at it, so the run uses PostgreSQL
throughout, the workers and servers the tests start included.
"""

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

USER = "taskqueue"


def server_binaries() -> Path:
    """Debian's PostgreSQL programs (/usr/lib/postgresql/<version>/bin), the newest if several."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda path: int(path.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    return Path(found[-1]).parent


def as_owner(command: list[str], owner: str | None) -> list[str]:
    # initdb and postgres refuse to run as root: root runs them as Debian's postgres user.
    if owner is None:
        return command
    return ["setpriv", f"--reuid={owner}", f"--regid={owner}", "--init-groups", *command]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Run a throwaway cluster on a free loopback port; yield its URL (a superuser, trust auth).

    Its files live in a directory of its own under /tmp: pytest's are closed to other users.
    """
    from tests.support.processes import free_port, stop, wait_until  # not at import: Django is not set up yet

    binaries = server_binaries()
    owner = "postgres" if os.geteuid() == 0 else None
    directory = Path(tempfile.mkdtemp(prefix="taskqueue-postgres-"))
    data, sockets = directory / "data", directory / "sockets"
    for path in (data, sockets):
        path.mkdir(parents=True, exist_ok=True)
        if owner:
            shutil.chown(path, owner, owner)
            shutil.chown(directory, owner, owner)
    initdb = subprocess.run(
        as_owner(
            [str(binaries / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8", "--no-sync"], owner
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if initdb.returncode:
        raise RuntimeError(f"initdb failed: {initdb.stderr[-2000:]}")
    port = free_port()
    log = open(directory / "postgres.log", "ab")  # noqa: SIM115 - closed below
    # fsync off: a test cluster need not survive a power cut, and it makes every commit faster.
    command = [str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1"]
    command += ["-k", str(sockets), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    process = subprocess.Popen(as_owner(command, owner), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ready = [str(binaries / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, "-d", "postgres"]
        wait_until(
            lambda: process.poll() is not None or subprocess.run(ready, capture_output=True).returncode == 0,
            30,
            f"PostgreSQL on port {port}",
            interval=0.2,
        )
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited: {(directory / 'postgres.log').read_text()[-2000:]}")
        yield f"postgres://{USER}@127.0.0.1:{port}/postgres"
    finally:
        stop(process, grace=20)
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def pytest_addoption(parser):
    parser.addoption("--postgres", action="store_true", help="run against a private PostgreSQL cluster, not SQLite")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    # Before pytest-django sets Django up: the settings read DATABASE_URL once.
    if "--postgres" in args:
        server = postgres_server()
        os.environ["DATABASE_URL"] = server.__enter__()
        early_config.add_cleanup(lambda: server.__exit__(None, None, None))
