"""`make bench`: the site beside the peer (bench/peer.py), in paired runs, written to bench/RESULTS.md.

One private redis-server on loopback serves both. The peer runs under gunicorn with 2 sync
workers; the site under each stock server setup of SETUPS with 2 workers and production
settings (DEBUG off, a real secret key, rate and depth limits off). wrk sends POST /tasks and
GET /tasks/<id> with 16 clients to the peer and the site in turn, the same minute, `--repeats`
times; every run is reported, and the ratios' medians are held against the targets.
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import SITE, write_section
from tests.support.processes import (
    PROJECT_ROOT,
    child_env,
    free_port,
    http_answers,
    redis_server,
    stop,
    wait_until,
)
from tests.support.webserver import production_command, production_env

BENCH_DIR = PROJECT_ROOT / "bench"
CLIENTS = 16
WORKERS = 2
VENV_BIN = Path(sys.executable).parent

# The stock server setups compared; the first is the production command (tests/support/webserver.py).
SETUPS = {
    "uvicorn --workers": lambda port: production_command("127.0.0.1", port, WORKERS),
    "gunicorn + uvicorn-worker": lambda port: [
        str(VENV_BIN / "gunicorn"),
        *("--worker-class", "uvicorn_worker.UvicornWorker", "--workers", str(WORKERS)),
        *("--bind", f"127.0.0.1:{port}", "--log-level", "warning", "taskqueue_site.asgi:application"),
    ],
    # The other two stock shapes the choice was between, measured on the routes under load.
    "Django's ASGI handler for every route (uvicorn)": lambda port: [
        str(VENV_BIN / "uvicorn"),
        *("--factory", "django.core.asgi:get_asgi_application", "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", str(WORKERS), "--no-access-log", "--log-level", "warning"),
    ],
    "WSGI server for pages and API (gunicorn, streams on a separate ASGI server)": lambda port: [
        str(VENV_BIN / "gunicorn"),
        *("--workers", str(WORKERS), "--threads", "4", "--bind", f"127.0.0.1:{port}"),
        *("--log-level", "warning", "taskqueue_site.wsgi:application"),
    ],
}
PEER = [str(VENV_BIN / "gunicorn"), "--workers", str(WORKERS), "--log-level", "warning", "bench.peer:app"]
# Why the first setup is the production server; the figures below are what it rests on.
CHOICE = (
    "`uvicorn --workers` is the production server, serving taskqueue_site/asgi.py: the two event-stream "
    "routes on Django's ASGI handler (an open stream holds no thread), everything else on Django's WSGI "
    "handler through a2wsgi. gunicorn with uvicorn's worker runs the same application at rates within "
    "this machine's run-to-run noise. Django's ASGI handler for every route is several times slower: each "
    "of Django's middleware hops to a thread and back. A WSGI server for the pages and API (gunicorn "
    "threads) is somewhat faster on GET, but needs a second server for the streams and a proxy rule "
    "splitting the routes between them, and it misses both targets too; one server is simpler. uvicorn is "
    "then the least to run and to know: no second package, one command line with the options the site "
    "needs (`--proxy-headers`, `--no-server-header`, `--log-config`, the connection limits), and `--reload` "
    "for `make run`. granian was tried too: its ASGI `receive` is not a coroutine, which a2wsgi needs."
)

# Why the speed targets are out of reach of stock parts (shown when a target is missed).
MISSED = (
    "Why the targets are missed: the `bare` column is the least a Django JSON view costs through the same "
    "server, middleware and a2wsgi, with no Redis call. GET /tasks/<id> adds one read of the job through "
    "RQ's `Job.fetch` (Redis round trip, RQ restoring the job) and POST /tasks adds Django's form "
    "validation and RQ's enqueue. The peer pays for RQ too but not for Django's "
    "request cycle. Going past this needs hand-written replacements of library code (the project's "
    "former ASGI-to-WSGI bridge and reader of RQ's storage format, both deleted by design), so the "
    "targets are recorded as missed, not chased."
)


@dataclass
class Run:
    rps: float
    p99_ms: float
    non_2xx: int


def wrk(url: str, seconds: int, script: Path | None = None) -> Run:
    command = ["wrk", "-t2", f"-c{CLIENTS}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    output = subprocess.run(
        [*command, *(["-s", str(script)] if script else []), url], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", output))
    if errors := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        bad += sum(int(n) for n in errors.groups())
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
    return Run(rps, float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit], bad)


def start(command: list[str], port: int, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """Start a server command that listens on `port`; wait until it answers."""
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_answers(base_url + "/tasks/none") or process.poll() is not None, 60, command[0])
        if process.poll() is not None:
            raise RuntimeError(f"{command} exited: {log.read_text()}")
    except BaseException:
        stop(process)
        raise
    return process, base_url


def post_task(base_url: str) -> str:
    request = urllib.request.Request(f"{base_url}/tasks", data=b"type=0")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]["task_id"]


def paired_runs(peer_url: str, site_url: str, seconds: int, repeats: int) -> list[dict[str, Run]]:
    """Each repeat: POST then GET, peer and site back to back (who goes first alternates)."""
    peer_get, site_get = f"{peer_url}/tasks/{post_task(peer_url)}", f"{site_url}/tasks/{post_task(site_url)}"
    runs = []
    for repeat in range(repeats):
        order = ("peer", "site") if repeat % 2 == 0 else ("site", "peer")
        targets = {
            "POST": {"peer": f"{peer_url}/tasks", "site": f"{site_url}/tasks"},
            "GET": {"peer": peer_get, "site": site_get},
        }
        run = {"site bare": wrk(f"{site_url}/bench/bare", seconds)}
        for method, urls in targets.items():
            for who in order:
                run[f"{who} {method}"] = wrk(urls[who], seconds, BENCH_DIR / "post.lua" if method == "POST" else None)
        runs.append(run)
    return runs


def machine() -> str:
    cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    redis_version = re.search(r"v=(\S+)", redis_version).group(1)
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
    packages = ", ".join(
        f"{name} {version(name)}" for name in ("Django", "rq", "redis", "a2wsgi", "gunicorn", "uvicorn", "Flask")
    )
    return (
        f"{os.cpu_count()} cores (nproc), {cpu.group(1) if cpu else 'unknown CPU'}, Linux {platform.release()}, "
        f"Python {platform.python_version()}; {packages}; "
        f"Redis {redis_version}; {wrk_version}."
    )


def ratios(runs: list[dict[str, Run]], method: str) -> list[float]:
    return [run[f"site {method}"].rps / run[f"peer {method}"].rps for run in runs]


def render(results: dict[str, list[dict[str, Run]]], args: argparse.Namespace) -> str:
    lines = [
        SITE,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {machine()}",
        "",
        f"Command: `make bench` (`python bench/run.py --seconds {args.seconds} --repeats {args.repeats}`).",
        f"wrk with {CLIENTS} clients over loopback, one redis-server for both. The peer (bench/peer.py, the "
        "tutorial's two views for RQ 2, one pooled Redis client) runs under gunicorn with 2 sync workers; the "
        "site under each server setup with 2 workers, DEBUG off, TASKS_RATE_LIMIT=off. POST sends `type=0` "
        "form data; GET polls one queued task; `bare` is GET of a Django view that only answers JSON, on the site's "
        "server. Each row is one set of runs taken back to back.",
        "",
    ]
    for setup, runs in results.items():
        lines += [
            f"## {setup}",
            "",
            "| run | POST peer | POST site | ratio | GET peer | GET site | ratio | bare | site p99 ms POST / GET "
            "| non-2xx |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for number, run in enumerate(runs, 1):
            bad = sum(result.non_2xx for result in run.values())
            lines.append(
                f"| {number} | {run['peer POST'].rps:,.0f} | {run['site POST'].rps:,.0f} | "
                f"{run['site POST'].rps / run['peer POST'].rps:.2f}x | {run['peer GET'].rps:,.0f} | "
                f"{run['site GET'].rps:,.0f} | {run['site GET'].rps / run['peer GET'].rps:.2f}x | "
                f"{run['site bare'].rps:,.0f} | "
                f"{run['site POST'].p99_ms:.1f} / {run['site GET'].p99_ms:.1f} | {bad} |"
            )
        lines += [
            "",
            f"Median ratios: POST {statistics.median(ratios(runs, 'POST')):.2f}x, "
            f"GET {statistics.median(ratios(runs, 'GET')):.2f}x.",
            "",
        ]
    production, runs = next(iter(results.items()))
    post, get = statistics.median(ratios(runs, "POST")), statistics.median(ratios(runs, "GET"))
    bad = sum(result.non_2xx for run in runs for result in run.values())
    lines += [
        f"## Targets ({production}, the production server)",
        "",
        "| target | measured (median) | met |",
        "| --- | --- | --- |",
        f"| site POST >= 1.0x peer POST | {post:.2f}x | {'yes' if post >= 1.0 else 'no'} |",
        f"| site GET >= 1.5x peer GET | {get:.2f}x | {'yes' if get >= 1.5 else 'no'} |",
        f"| zero non-2xx | {bad} | {'yes' if bad == 0 else 'no'} |",
        "",
        *([MISSED, ""] if post < 1.0 or get < 1.5 else []),
        "## Why this server",
        "",
        CHOICE,
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--repeats", type=int, default=3, help="paired runs per server setup")
    parser.add_argument("--setups", nargs="*", default=list(SETUPS), help="server setups to measure")
    parser.add_argument("--output", default=str(BENCH_DIR / "RESULTS.md"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch, redis_server(Path(scratch) / "redis") as (redis_port, _):
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        peer_env = {**os.environ, "REDIS_URL": redis_url}
        port = free_port()
        peer, peer_url = start([*PEER, "--bind", f"127.0.0.1:{port}"], port, peer_env, Path(scratch) / "peer.log")
        settings = {"TASKS_RATE_LIMIT": "off", "TASKS_MAX_QUEUE_DEPTH": "0", "DJANGO_LOG_LEVEL": "WARNING"}
        # bench.settings: the site's settings and routes plus /bench/bare (the `bare` column).
        site_env = child_env(REDIS_URL=redis_url, DJANGO_SECURE_SSL_REDIRECT="false", **settings)
        site_env["DJANGO_SETTINGS_MODULE"] = "bench.settings"
        site_env = production_env(site_env, Path(scratch))
        try:
            for setup in args.setups:
                port = free_port()
                site, site_url = start(SETUPS[setup](port), port, site_env, Path(scratch) / f"{setup}.log")
                try:
                    results[setup] = paired_runs(peer_url, site_url, args.seconds, args.repeats)
                finally:
                    stop(site)
        finally:
            stop(peer)
    report = render(results, args)
    write_section(SITE, report, Path(args.output))
    print(report)


if __name__ == "__main__":
    main()
