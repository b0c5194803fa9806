"""`make bench-history`: the admin's job history pages with a million rows, on SQLite and PostgreSQL.

For each database (a fresh SQLite file; a private PostgreSQL cluster started as the tests start
theirs, stopped by process id) a child process migrates, fills it with bench/fill_history.py,
logs in a superuser through Django's test client, asks each page once to warm up and then
--tries times, and reports p50/p95. Then it prunes the older half of the history and times that.
The figures are written into their own section of bench/RESULTS.md.
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
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import HISTORY_AT_SCALE, write_section
from tests.support.postgres import postgres_server
from tests.support.processes import PROJECT_ROOT, child_env, redis_server

HISTORY = "/admin/tasks_app/jobrecord/"
TARGET_MS = 500
# Measured beside the targets; a search for a part of an id or an error word must not be absurd.
UNTARGETED = {"search: part of an id", "search: an error word"}


def pages() -> dict[str, str]:
    """The pages to time, named; the ids and terms are taken from rows in the middle of the history."""
    from django.utils import timezone

    from tasks_app.models import JobRecord

    rows = JobRecord.objects.order_by("pk")
    middle = rows.count() // 2
    job = rows[middle]
    emailed = rows.filter(pk__gte=job.pk).exclude(email="")[0]
    # As DateFieldListFilter's "Past 7 days" link puts them.
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    week_ago, tomorrow = quote(str(today - timedelta(days=7))), quote(str(today + timedelta(days=1)))
    return {
        "history list": HISTORY,
        "filter: status": f"{HISTORY}?status__exact=failed",
        "filter: queue": f"{HISTORY}?queue__exact=low",
        "filter: type": f"{HISTORY}?task_type__exact=2",
        "filter: task": f"{HISTORY}?kind__exact=thumbnail",
        "filter: date (past 7 days)": f"{HISTORY}?created_at__gte={week_ago}&created_at__lt={tomorrow}",
        "search: id prefix": f"{HISTORY}?q={job.job_id[:8]}",
        "search: email address": f"{HISTORY}?q={emailed.email}",
        "search: IP address": f"{HISTORY}?q={job.submitter_ip}",
        "search: part of an id": f"{HISTORY}?q={job.job_id[9:18]}",
        "search: an error word": f"{HISTORY}?q=damaged",
        "a job's page": f"{HISTORY}{job.pk}/change/",
        "health page": f"{HISTORY}health/",
    }


def measure_here(rows: int, days: float, tries: int) -> dict:
    """In the child: fill this process's database, time each page, then pruning; return the figures."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from bench.fill_history import fill

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)  # DEBUG is off: pages need the manifest
    started = time.monotonic()
    fill(rows, days, log=lambda line: print(line, file=sys.stderr))
    fill_seconds = time.monotonic() - started
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")  # what autovacuum does soon after a bulk load
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("bench", password="unused"))  # noqa: S106
    timings = {}
    for name, url in pages().items():
        response = client.get(url, secure=True)
        assert response.status_code == 200, (name, url, response.status_code)
        if "cl" in (response.context or {}):
            assert response.context["cl"].result_list, f"{name}: nothing found at {url}"
        times = []
        for _ in range(tries):
            began = time.perf_counter()
            client.get(url, secure=True)
            times.append((time.perf_counter() - began) * 1000)
        timings[name] = times
        print(f"{name}: p95 {percentile(times, 95):.0f} ms", file=sys.stderr)
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "manage.py", "prune_job_history", "--days", str(int(days // 2))],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    prune = {"seconds": time.monotonic() - started, "output": out.strip()}
    return {"fill_seconds": fill_seconds, "timings": timings, "prune": prune}


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def measure(database_url: str, redis_port: int, scratch: str, args: argparse.Namespace) -> dict:
    """Run the measurement in a child process with its own DATABASE_URL (settings read it once)."""
    env = child_env(
        DATABASE_URL=database_url,
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="bench-only-7d1e4a9c2f6b8e0d3a5c7f9b1e4d6a8c0f2b4d6e8a0c2e4f6a8b0d2c4e6f8a0b",  # noqa: S106
        DJANGO_ALLOWED_HOSTS="testserver",
        DJANGO_LOG_LEVEL="WARNING",
        DJANGO_STATIC_ROOT=f"{scratch}/static",
    )
    command = [sys.executable, __file__, "--child", "--rows", str(args.rows), "--days", str(args.days)]
    command += ["--tries", str(args.tries)]
    child = subprocess.run(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(child.stdout.splitlines()[-1])


def machine() -> str:
    cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    postgres = re.findall(r"\) (\S+)", subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout)
    import sqlite3

    return (
        f"{os.cpu_count()} cores (nproc), {cpu.group(1) if cpu else 'unknown CPU'}, Linux {platform.release()}, "
        f"Python {platform.python_version()}; Django {version('Django')}, SQLite {sqlite3.sqlite_version}, "
        f"PostgreSQL {' '.join(postgres) or 'unknown'}, psycopg {version('psycopg')}."
    )


def render(results: dict[str, dict], args: argparse.Namespace) -> str:
    names = list(next(iter(results.values()))["timings"])
    header = "| page | " + " | ".join(f"{db} p50 / p95 ms" for db in results) + " | target met |"
    lines = [
        HISTORY_AT_SCALE,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {machine()}",
        "",
        f"Command: `make bench-history` (`python bench/history_scale.py --rows {args.rows} --days {args.days:g} "
        f"--tries {args.tries}`).",
        f"{args.rows:,} rows made by bench/fill_history.py over {args.days:g} days; a superuser through Django's "
        f"test client (DEBUG off), each page once to warm up, then {args.tries} times. Target: p95 under "
        f"{TARGET_MS} ms on each database (searches for a part of an id or an error word have none).",
        "",
        header,
        "| --- |" + " --- |" * (len(results) + 1),
    ]
    for name in names:
        cells, met = [], True
        for result in results.values():
            times = result["timings"][name]
            p95 = percentile(times, 95)
            met = met and p95 < TARGET_MS
            cells.append(f"{statistics.median(times):,.0f} / {p95:,.0f}")
        verdict = "(no target)" if name in UNTARGETED else "yes" if met else "no"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {verdict} |")
    lines += ["", "| database | fill | prune the older half (`prune_job_history`) |", "| --- | --- | --- |"]
    for db, result in results.items():
        prune = result["prune"]
        lines.append(f"| {db} | {result['fill_seconds']:.0f} s | {prune['seconds']:.1f} s: {prune['output']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--databases", nargs="*", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--no-write", action="store_true", help="print the figures only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_here(args.rows, args.days, args.tries)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as scratch, redis_server(Path(scratch) / "redis") as (redis_port, _):
        if "sqlite" in args.databases:
            results["SQLite"] = measure(f"sqlite:///{scratch}/history.sqlite3", redis_port, scratch, args)
        if "postgres" in args.databases:
            with postgres_server() as url:
                results["PostgreSQL"] = measure(url, redis_port, scratch, args)
    report = render(results, args)
    if not args.no_write:
        write_section(HISTORY_AT_SCALE, report)
    print(report)


if __name__ == "__main__":
    main()
