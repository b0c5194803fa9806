"""`make bench`: how fast the site enqueues, reports and runs jobs, beside raw RQ and Redis.

Starts its own redis-server, the site under its production server (uvicorn, DEBUG off, rate
and depth limits off) and workers, all on loopback; measures; prints a table; writes
bench/RESULTS.md. Every load run is bounded in time (wrk -d), each figure is the median of
--repeats runs.
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
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import django
import redis
import rq
import uvicorn
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from tasks_app.management.commands.runstack import descendants
from tests.support.processes import PROJECT_ROOT, child_env, manage_py, redis_server, start_asgi_server, stop
from tests.support.webserver import production_env

BENCH_DIR = PROJECT_ROOT / "bench"
QUEUES = ("high", "default", "low")


@dataclass
class HttpResult:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    cpu_ms: float = 0.0  # CPU time the web server spent per request (all its processes)
    switches: float = 0.0  # context switches of the web server's threads per request


def median(values):
    return statistics.median(values)


def wrk(url: str, clients: int, seconds: int, script: Path | None = None) -> HttpResult:
    command = ["wrk", f"-t{min(clients, 2)}", f"-c{clients}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if script:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    non_2xx = int(match.group(1)) if (match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)) else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors:
        non_2xx += sum(int(number) for number in errors.groups())
    return HttpResult(rps, latency_ms(output, "50%"), latency_ms(output, "99%"), non_2xx)


def latency_ms(output: str, quantile: str) -> float:
    value, unit = re.search(rf"^\s+{re.escape(quantile)}\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def http_runs(
    url: str, clients: int, seconds: int, repeats: int, server_pid: int, script: Path | None = None
) -> HttpResult:
    cpu_before, switches_before = tree_cpu_seconds(server_pid), tree_context_switches(server_pid)
    runs = [wrk(url, clients, seconds, script) for _ in range(repeats)]
    requests = sum(run.rps * seconds for run in runs)
    return HttpResult(
        median([run.rps for run in runs]),
        median([run.p50_ms for run in runs]),
        median([run.p99_ms for run in runs]),
        sum(run.non_2xx for run in runs),
        (tree_cpu_seconds(server_pid) - cpu_before) * 1000 / requests,
        (tree_context_switches(server_pid) - switches_before) / requests,
    )


def redis_benchmark(port: int) -> dict[str, float]:
    """Requests per second of the commands RQ's enqueue and dequeue use, 16 clients, no pipelining."""
    output = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-c", "16", "-n", "100000", "-q", "-t", "hset,rpush,lpop,zadd,incr"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rates = {
        name.lower(): float(rate)
        for name, rate in re.findall(r"^(\w+)[^:]*: ([\d.]+) requests per second", output, re.M)
    }
    publish = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-c", "16", "-n", "100000", "-q", "publish", "bench", "x"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rates["publish"] = float(re.search(r"([\d.]+) requests per second", publish).group(1))
    return rates


def raw_enqueue_rate(connection: Redis, seconds: float, repeats: int) -> tuple[float, float]:
    """RQ's Queue.enqueue from this one process, no HTTP: the ceiling for POST /tasks.

    Returns jobs per second and the CPU time (ms) this process spent per job.
    """
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    rates, cpu_ms = [], []
    for _ in range(repeats):
        count, started, cpu_started = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - started < seconds:
            queue.enqueue("tasks_app.tasks.sleep_task", 0)
            count += 1
        rates.append(count / (time.perf_counter() - started))
        cpu_ms.append((time.process_time() - cpu_started) * 1000 / count)
        connection.flushdb()
    return median(rates), median(cpu_ms)


def post_task(base_url: str) -> str:
    """Submit a task through the API, as a polling script would have; return its id."""
    request = urllib.request.Request(
        f"{base_url}/tasks", data=b'{"type": 0}', headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]["task_id"]


def run_burst_worker(env: dict) -> None:
    """Run every waiting job once (a burst worker), and wait for it to finish."""
    worker = manage_py("rqworker", *QUEUES, "--burst", "--worker-class=tasks_app.workers.InProcessJSONWorker", env=env)
    try:
        worker.wait(timeout=60)
    finally:
        stop(worker)


def paired_post_runs(connection: Redis, url: str, seconds: int, repeats: int) -> list[tuple[float, HttpResult]]:
    """Raw enqueue, then POST /tasks at 16 clients right after it, `repeats` times: (raw jobs/s, POST result).

    This machine's speed drifts by a quarter between minutes; a ratio of two runs taken side by
    side holds still where a ratio of two medians taken minutes apart does not.
    """
    pairs = []
    for _ in range(repeats):
        raw, _cpu = raw_enqueue_rate(connection, seconds, 1)
        pairs.append((raw, wrk(url, 16, seconds, BENCH_DIR / "post.lua")))
        connection.flushdb()
    return pairs


def worker_rate(env: dict, connection: Redis, jobs: int, command: list[str]) -> tuple[float, float]:
    """Jobs per second for a burst worker setup draining `jobs` no-op jobs; and its peak RSS (MiB)."""
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    with connection.pipeline() as pipeline:
        for _ in range(jobs):
            queue.enqueue("bench.jobs.noop", pipeline=pipeline)
        pipeline.execute()
    started = time.perf_counter()
    process = manage_py(*command, "--burst", "--verbosity=0", env=env)
    peak = 0.0
    try:
        while process.poll() is None:
            peak = max(peak, tree_rss_mib(process.pid))
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        stop(process)
    finished = connection.zcard("rq:finished:default")
    connection.flushdb()
    return finished / elapsed, peak


def enqueue_to_start(env: dict, connection: Redis, samples: int, worker_class: str) -> tuple[float, float, float]:
    """Enqueue-to-start latency with an idle worker: p50, p99 (ms), and the idle worker's RSS (MiB)."""
    worker = manage_py("rqworker", *QUEUES, f"--worker-class={worker_class}", "--verbosity=0", env=env)
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    latencies = []
    try:
        wait_for(lambda: connection.scard("rq:workers") >= 1, 30)
        time.sleep(0.5)  # idle: the worker sits in its blocking pop
        idle_rss = tree_rss_mib(worker.pid)
        for _ in range(samples):
            job = queue.enqueue("bench.jobs.noop")
            wait_for(lambda job=job: connection.hget(job.key, "status") == b"finished", 10, interval=0.001)
            job.refresh()
            latencies.append((job.started_at - job.enqueued_at).total_seconds() * 1000)
            time.sleep(0.02)  # let the worker go idle again
    finally:
        stop(worker)
        connection.flushdb()
    latencies.sort()
    return median(latencies), latencies[int(0.99 * (len(latencies) - 1))], idle_rss


def wait_for(condition, timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not met in time")
        time.sleep(interval)


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants, in MiB."""
    total = 0
    for child in [pid, *descendants(pid)]:
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        if match := re.search(r"^VmRSS:\s+(\d+) kB", status, re.M):
            total += int(match.group(1))
    return total / 1024


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user and system) used so far by a process and its descendants."""
    ticks = 0
    for process in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (proc(5), counted after the name)
    return ticks / os.sysconf("SC_CLK_TCK")


def site_env(redis_url: str, scratch: Path) -> dict[str, str]:
    """The environment of the site and workers under test: production settings, limits off, plain HTTP."""
    return production_env(
        child_env(
            REDIS_URL=redis_url,
            DJANGO_SETTINGS_MODULE="bench.settings",
            DJANGO_SECURE_SSL_REDIRECT="false",  # plain HTTP on loopback
            DJANGO_LOG_LEVEL="WARNING",
            TASKS_RATE_LIMIT="off",
            TASKS_MAX_QUEUE_DEPTH="0",
        ),
        scratch,
    )


def tree_context_switches(pid: int) -> int:
    """Context switches so far of every thread of a process and its descendants (both kinds)."""
    total = 0
    for process in [pid, *descendants(pid)]:
        for thread in Path(f"/proc/{process}/task").glob("*/status"):
            try:
                status = thread.read_text()
            except OSError:
                continue
            total += sum(int(count) for count in re.findall(r"^\w*voluntary_ctxt_switches:\s+(\d+)", status, re.M))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each HTTP load run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (the median is kept)")
    parser.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", 2)))
    parser.add_argument("--output", default=str(BENCH_DIR / "RESULTS.md"))
    args = parser.parse_args()
    results: dict = {}

    with tempfile.TemporaryDirectory() as scratch, redis_server(Path(scratch) / "redis") as (port, _):
        url = f"redis://127.0.0.1:{port}/0"
        connection = Redis.from_url(url)
        env = site_env(url, Path(scratch))
        results["redis"] = redis_benchmark(port)
        connection.flushdb()
        results["raw_enqueue"], results["raw_enqueue_cpu_ms"] = raw_enqueue_rate(connection, args.seconds, args.repeats)

        web, base_url = start_asgi_server(env, None, "--workers", str(args.web_workers), "--log-level", "warning")
        try:
            time.sleep(1)
            results["web_rss_idle"] = tree_rss_mib(web.pid)
            results["post"] = {
                clients: http_runs(
                    f"{base_url}/tasks", clients, args.seconds, args.repeats, web.pid, BENCH_DIR / "post.lua"
                )
                for clients in (1, 16, 64)
            }
            results["paired"] = paired_post_runs(connection, f"{base_url}/tasks", args.seconds, args.repeats)
            results["web_rss_load"] = tree_rss_mib(web.pid)
            connection.flushdb()
            task_id = post_task(base_url)
            results["get"] = http_runs(f"{base_url}/tasks/{task_id}", 16, args.seconds, args.repeats, web.pid)
            results["bare"] = http_runs(f"{base_url}/bench/bare", 16, args.seconds, args.repeats, web.pid)
            run_burst_worker(env)  # the polled task finishes: its last poll reads the result too
            results["get_finished"] = http_runs(f"{base_url}/tasks/{task_id}", 16, args.seconds, args.repeats, web.pid)
        finally:
            stop(web)
        connection.flushdb()

        forking = ["rqworker", "default", "--worker-class=tasks_app.workers.JSONWorker"]
        in_process = ["rqworker", "default", "--worker-class=tasks_app.workers.InProcessJSONWorker"]
        pool = ["rqworker-pool", "default", "--num-workers=2", "--worker-class=tasks_app.workers.InProcessJSONWorker"]
        results["workers"] = {
            "forking (RQ's default, 1 process)": worker_rate(env, connection, 300, forking),
            "in-process (1 process)": worker_rate(env, connection, 3000, in_process),
            "in-process pool of 2 (rqworker-pool)": worker_rate(env, connection, 3000, pool),
        }
        results["latency"] = {
            "forking": enqueue_to_start(env, connection, 200, "tasks_app.workers.JSONWorker"),
            "in-process": enqueue_to_start(env, connection, 200, "tasks_app.workers.InProcessJSONWorker"),
        }

    report = render(results, args)
    Path(args.output).write_text(report)
    print(report)


def render(results: dict, args) -> str:
    raw = results["raw_enqueue"]
    post16 = results["post"][16]
    paired = results["paired"]
    paired_ratio = median([post.rps / raw_rate for raw_rate, post in paired])
    non_2xx = sum(r.non_2xx for r in results["post"].values()) + sum(post.non_2xx for _, post in paired)
    workers = results["workers"]
    forking_rate = workers["forking (RQ's default, 1 process)"][0]
    best_name, (best_rate, _) = max(workers.items(), key=lambda item: item[1][0])
    lines = [
        "# Benchmark results",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: {os.cpu_count()} cores,",
        f"{platform.platform()}, Python {platform.python_version()}, Django {django.get_version()},",
        f"rq {rq.__version__}, redis-py {redis.__version__}, uvicorn {uvicorn.__version__},",
        f"{subprocess.run(['redis-server', '--version'], capture_output=True, text=True).stdout.split(' sha')[0]}.",
        "",
        "Command: `make bench` (`.venv/bin/python bench/run.py "
        f"--seconds {args.seconds} --repeats {args.repeats} --web-workers {args.web_workers}`). Everything on "
        "loopback: a private redis-server, the site under uvicorn with DEBUG off and rate/depth limits off, "
        f"`wrk` as the load generator. HTTP figures are medians of {args.repeats} runs of {args.seconds} s.",
        "",
        "## Ceilings",
        "",
        "| what | rate |",
        "| --- | --- |",
        *[
            f"| redis-benchmark `{name.upper()}` (16 clients) | {rate:,.0f} req/s |"
            for name, rate in results["redis"].items()
        ],
        f"| raw RQ `Queue.enqueue`, one Python process, no HTTP | {raw:,.0f} jobs/s "
        f"({results['raw_enqueue_cpu_ms']:.2f} ms of CPU a job) |",
        "",
        "## HTTP",
        "",
        "CPU ms/req: CPU time the web server's processes spent per request; switches/req: context switches "
        "of their threads per request (voluntary and not); both from /proc.",
        "",
        "| endpoint | clients | req/s | p50 ms | p99 ms | non-2xx | CPU ms/req | switches/req | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for clients, result in results["post"].items():
        lines.append(
            f"| `POST /tasks` | {clients} | {result.rps:,.0f} | {result.p50_ms:.2f} | {result.p99_ms:.2f} | "
            f"{result.non_2xx} | {result.cpu_ms:.2f} | {result.switches:.1f} | {result.rps / raw:.2f}x raw enqueue |"
        )
    get, finished, bare = results["get"], results["get_finished"], results["bare"]
    lines += [
        f"| `GET /tasks/<id>`, queued task | 16 | {get.rps:,.0f} | {get.p50_ms:.2f} | {get.p99_ms:.2f} | "
        f"{get.non_2xx} | {get.cpu_ms:.2f} | {get.switches:.1f} | {get.rps / bare.rps:.2f}x bare view |",
        f"| `GET /tasks/<id>`, finished task | 16 | {finished.rps:,.0f} | {finished.p50_ms:.2f} | "
        f"{finished.p99_ms:.2f} | {finished.non_2xx} | {finished.cpu_ms:.2f} | {finished.switches:.1f} | "
        f"{finished.rps / bare.rps:.2f}x bare view |",
        f"| bare Django JSON view | 16 | {bare.rps:,.0f} | {bare.p50_ms:.2f} | {bare.p99_ms:.2f} | "
        f"{bare.non_2xx} | {bare.cpu_ms:.2f} | {bare.switches:.1f} | 1 |",
        "",
        "Paired runs: a raw enqueue run, then `POST /tasks` at 16 clients right after it "
        "(raw jobs/s, POST req/s, ratio): "
        + "; ".join(f"{raw_rate:,.0f}, {post.rps:,.0f}, {post.rps / raw_rate:.2f}x" for raw_rate, post in paired)
        + f". Median ratio {paired_ratio:.2f}x.",
        "",
        "## Workers (no-op jobs)",
        "",
        "| setup | jobs/s | ratio | peak RSS MiB |",
        "| --- | --- | --- | --- |",
        *[
            f"| {name} | {rate:,.0f} | {rate / forking_rate:.1f}x | {rss:.0f} |"
            for name, (rate, rss) in results["workers"].items()
        ],
        "",
        "| enqueue to start, idle worker | p50 ms | p99 ms | idle RSS MiB |",
        "| --- | --- | --- | --- |",
        *[f"| {name} | {p50:.2f} | {p99:.2f} | {rss:.0f} |" for name, (p50, p99, rss) in results["latency"].items()],
        "",
        "## Memory",
        "",
        f"Web server ({args.web_workers} uvicorn workers and their supervisor): {results['web_rss_idle']:.0f} MiB "
        f"idle, {results['web_rss_load']:.0f} MiB after the POST runs.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "| --- | --- | --- |",
        f"| `POST /tasks` at 16 clients >= 0.75x raw enqueue (paired runs, median) | {paired_ratio:.2f}x | "
        f"{'yes' if paired_ratio >= 0.75 else 'no'} |",
        f"| `POST /tasks` p99 < 20 ms at 16 clients | {post16.p99_ms:.1f} ms | "
        f"{'yes' if post16.p99_ms < 20 else 'no'} |",
        f"| zero non-2xx | {non_2xx} | {'yes' if not non_2xx else 'no'} |",
        f"| `GET /tasks/<id>` >= 0.5x bare view (queued task) | {get.rps / bare.rps:.2f}x | "
        f"{'yes' if get.rps >= 0.5 * bare.rps else 'no'} |",
        f"| `GET /tasks/<id>` >= 0.5x bare view (finished task) | {finished.rps / bare.rps:.2f}x | "
        f"{'yes' if finished.rps >= 0.5 * bare.rps else 'no'} |",
        f"| recommended workers >= 5x forking ({best_name}) | {best_rate / forking_rate:.1f}x | "
        f"{'yes' if best_rate >= 5 * forking_rate else 'no'} |",
        f"| enqueue-to-start p99 < 20 ms (in-process) | {results['latency']['in-process'][1]:.1f} ms | "
        f"{'yes' if results['latency']['in-process'][1] < 20 else 'no'} |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
