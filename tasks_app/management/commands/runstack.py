"""Run the whole system on one machine: a private Redis, the web server and workers.

`make run` calls this after installing everything. Ctrl-C (or SIGTERM) stops every process
it started, by process group, and waits for them.
"""

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
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

READY_TIMEOUT_SECONDS = 30


class Command(BaseCommand):
    help = (
        "Start Redis (unless REDIS_URL or REDIS_SENTINELS is set), the web server and workers; stop them all on Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="web server address")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)), help="web server port")
        parser.add_argument(
            "--redis-port",
            type=int,
            default=int(os.environ.get("REDIS_PORT", 6379)),
            help="port of the private Redis started when REDIS_URL is not set",
        )
        parser.add_argument(
            "--workers", type=int, default=int(os.environ.get("WORKERS", 1)), help="number of rqworker processes"
        )
        parser.add_argument(
            "--data-dir", default=str(settings.BASE_DIR / "var" / "redis"), help="where the private Redis keeps data"
        )
        parser.add_argument(
            "--stop-grace",
            type=float,
            default=float(os.environ.get("STOP_GRACE_SECONDS", 10)),
            help="seconds a worker may take to finish its job on Ctrl-C before the job is stopped",
        )

    def handle(self, *args, **options):
        if options["workers"] < 1:
            raise CommandError("--workers must be at least 1")
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False
        self.stop_grace = options["stop_grace"]
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        env = dict(os.environ)
        url = f"http://{options['host']}:{options['port']}/"
        env.setdefault("SITE_URL", url)  # links in emails and thumbnail URLs point at this server
        try:
            if os.environ.get("REDIS_SENTINELS"):
                self.stdout.write(f"Using Redis Sentinel at {os.environ['REDIS_SENTINELS']}")
            elif os.environ.get("REDIS_URL"):
                self.stdout.write(f"Using Redis at {os.environ['REDIS_URL']}")
            else:
                env["REDIS_URL"] = self.start_redis(options["redis_port"], Path(options["data_dir"]))
            self.start_web(env, options["host"], options["port"])
            for number in range(1, options["workers"] + 1):
                self.start_worker(env, number)
            self.wait_for_http(url)
            self.stdout.write(self.style.SUCCESS(f"taskqueue is running at {url}  (Ctrl-C stops everything)"))
            self.supervise()
        except KeyboardInterrupt:
            self.stdout.write("stopping…")
        finally:
            self.stop_all()

    def request_stop(self, signum, frame):
        self.stopping = True

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        # Each child leads its own process group so that stopping it also stops anything it forked
        # (runserver's reloader, the worker's job horses).
        process = subprocess.Popen(command, env=env, start_new_session=True)
        self.children.append((name, process))
        self.stdout.write(f"started {name} (pid {process.pid})")
        return process

    def start_redis(self, port: int, data_dir: Path) -> str:
        server = shutil.which("redis-server")
        if server is None:
            raise CommandError("redis-server is not installed: apt-get install redis-server, or set REDIS_URL")
        if port_is_open("127.0.0.1", port):
            raise CommandError(
                f"port {port} is already in use: set REDIS_PORT to a free port, or REDIS_URL to use that server"
            )
        data_dir.mkdir(parents=True, exist_ok=True)
        command = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir)]
        command += ["--appendonly", "yes", "--save", "", "--protected-mode", "yes"]
        self.spawn("redis", command, dict(os.environ))
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not redis_answers_ping("127.0.0.1", port):
            self.check_children()
            if time.monotonic() > deadline:
                raise CommandError(f"Redis did not answer on port {port}")
            time.sleep(0.05)
        return f"redis://127.0.0.1:{port}/0"

    def start_web(self, env: dict[str, str], host: str, port: int) -> None:
        if port_is_open(host, port):
            raise CommandError(f"port {port} is already in use: set PORT to a free port")
        self.spawn("web", [sys.executable, manage_py(), "runserver", f"{host}:{port}"], env)

    def start_worker(self, env: dict[str, str], number: int) -> None:
        command = [sys.executable, manage_py(), "rqworker", *settings.TASK_QUEUES, "--with-scheduler"]
        self.spawn(f"worker-{number}", command, env)

    def wait_for_http(self, url: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            self.check_children()
            try:
                with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own loopback server
                    return
            except urllib.error.HTTPError:
                return  # an answer, even a 400 (HOST=0.0.0.0 is not an allowed host): the server is up
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise CommandError(f"the web server did not answer at {url}") from None
                time.sleep(0.1)

    def check_children(self) -> None:
        if self.stopping:
            raise KeyboardInterrupt
        for name, process in self.children:
            if process.poll() is not None:
                raise CommandError(f"{name} exited with status {process.returncode}")

    def supervise(self) -> None:
        while True:
            self.check_children()
            time.sleep(0.2)

    def stop_all(self) -> None:
        # Workers and web first, so no job is left half-run; Redis last, so it can write its file.
        for name, process in reversed(self.children):
            stop_process_group(process, self.stop_grace)
            self.stdout.write(f"stopped {name}")
        self.children.clear()


def stop_process_group(process: subprocess.Popen, grace_seconds: float = 10, cold_seconds: float = 5) -> None:
    """Stop a child and everything it started, by process group and by process id.

    SIGTERM first: a worker finishes its job, the others exit. A second SIGTERM after the grace
    period is RQ's cold shutdown: the worker kills its job's work horse (which runs in a process
    group of its own, out of reach of the first signal) and exits. Whatever still runs then gets
    SIGKILL, the group and each descendant seen while the child was alive.
    """
    seen: set[int] = set()
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            seen.update(descendants(process.pid))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=cold_seconds)
            except subprocess.TimeoutExpired:
                seen.update(descendants(process.pid))
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):  # grandchildren that outlived their parent
        os.killpg(process.pid, signal.SIGKILL)
    for pid in seen:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """The process ids of a process's children, their children and so on (Linux /proc).

    Each thread lists the children it forked: all threads are read, not only the main one.
    """
    children = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):  # the thread or the process has just ended
            children += [int(child) for child in listing.read_text().split()]
    return [descendant for child in children for descendant in (child, *descendants(child))]


def manage_py() -> str:
    # Read when used, not at import: bench/run.py imports descendants() without Django settings.
    return str(settings.BASE_DIR / "manage.py")


def port_is_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def redis_answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False
