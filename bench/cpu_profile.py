"""`make bench-profile`: where the web server's Python time goes under load, layer by layer.

Starts its own redis-server and the site under its production server, as `make bench` does.
For each endpoint it makes two wrk runs at 16 clients: one alone, to measure the rate and the CPU
the web processes spend per request, and one while py-spy samples whichever thread of each web
process holds the GIL. Each sample is charged to the innermost frame that is not Python's
standard library (json.dumps called by Django counts as Django's), which splits the Python work
of a request between Django, RQ, redis-py, uvicorn and our own code. Writes bench/PROFILE.md.
"""

import argparse
import contextlib
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import django
import redis
import rq
from redis import Redis

from bench.run import BENCH_DIR, HttpResult, http_runs, post_task, run_burst_worker, site_env, wrk
from tests.support.processes import PROJECT_ROOT, redis_server, start_asgi_server, stop

PY_SPY = Path(sys.executable).with_name("py-spy")
CLIENTS = 16
SAMPLES_PER_SECOND = 100  # py-spy shares the two cores with the server; more samples slow it down more

# The first part of a frame's file (as py-spy prints it, relative to sys.path) names its layer.
# asyncio is the standard library's, but its frames are the event loop's own work (and uvloop's,
# in C under them): a layer of its own rather than charged to uvicorn, which runs the loop.
LAYERS = {
    "django": "Django",
    "rq": "RQ and django-rq",
    "django_rq": "RQ and django-rq",
    "redis": "redis-py",
    "uvicorn": "uvicorn (HTTP)",
    "httptools": "uvicorn (HTTP)",
    "asyncio": "event loop (asyncio, uvloop)",
    "uvloop": "event loop (asyncio, uvloop)",
    "taskqueue_site": "ours: serving (serve.py, asgi.py)",
    "tasks_app": "ours: the app (tasks_app)",
    "bench": "the bench's bare view",
}
OTHER_PACKAGES = "other packages"
STANDARD_LIBRARY = "the rest of the standard library alone (thread pool, start-up)"
LAYER_ORDER = [*dict.fromkeys(LAYERS.values()), OTHER_PACKAGES, STANDARD_LIBRARY]
STANDARD_LIBRARY_DIR = re.compile(r"/lib/python3\.\d+/")
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")

Stacks = Counter[tuple[str, ...]]  # a stack (outermost frame first) and how many samples had it


@dataclass
class Scenario:
    name: str
    path: str
    script: Path | None = None


@dataclass
class Profile:
    scenario: Scenario
    measured: HttpResult  # the run without py-spy: rate and CPU per request
    stacks: Stacks


def read_stacks(text: str) -> Stacks:
    """Parse py-spy's raw (collapsed) output: `frame;frame;... count` a line."""
    stacks: Stacks = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            frames = tuple(frame for frame in stack.split(";") if FRAME.match(frame))
            stacks[frames] += int(count)
    return stacks


def layer_of(file: str) -> str | None:
    """The layer a source file belongs to; None for Python's standard library (but asyncio)."""
    if file.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return None
    # py-spy shortens paths on sys.path; one it could not is cut the same way here.
    if "site-packages/" in file:
        file = file.rsplit("site-packages/", 1)[1]
    elif file.startswith(f"{PROJECT_ROOT}/"):
        file = file.removeprefix(f"{PROJECT_ROOT}/")
    elif match := STANDARD_LIBRARY_DIR.search(file):
        file = file[match.end() :]
    top = file.split("/", 1)[0].removesuffix(".py")
    if top in LAYERS:
        return LAYERS[top]
    return None if top in sys.stdlib_module_names else OTHER_PACKAGES


def charged_layer(stack: tuple[str, ...]) -> str:
    """The layer a sample is charged to: that of its innermost frame outside the standard library."""
    for frame in reversed(stack):
        if layer := layer_of(FRAME.match(frame)["file"]):
            return layer
    return STANDARD_LIBRARY


def layer_shares(stacks: Stacks) -> dict[str, float]:
    """Each layer's share of the samples, in LAYER_ORDER."""
    totals: Counter[str] = Counter()
    for stack, count in stacks.items():
        totals[charged_layer(stack)] += count
    samples = sum(totals.values()) or 1
    return {layer: totals[layer] / samples for layer in LAYER_ORDER}


def hottest_functions(stacks: Stacks, limit: int) -> list[tuple[str, float]]:
    """The innermost Python frames that held the CPU most: (function and file, share of samples)."""
    totals: Counter[str] = Counter()
    for stack, count in stacks.items():
        if stack:
            match = FRAME.match(stack[-1])
            totals[f"{match['function']} ({match['file']})"] += count
    samples = sum(totals.values()) or 1
    return [(function, count / samples) for function, count in totals.most_common(limit)]


def profile(scenario: Scenario, base_url: str, server_pid: int, seconds: int, output: Path) -> Profile:
    """Measure one endpoint alone, then sample it under the same load."""
    url = base_url + scenario.path
    measured = http_runs(url, CLIENTS, seconds, 1, server_pid, scenario.script)
    sampler = subprocess.Popen(
        [
            str(PY_SPY),
            "record",
            f"--pid={server_pid}",
            "--subprocesses",  # the supervisor's workers, where the requests run
            "--gil",  # only the thread running Python code: threads waiting are not work
            "--nonblocking",  # read the processes without pausing them
            f"--rate={SAMPLES_PER_SECOND}",
            "--format=raw",
            f"--output={output}",
            f"--duration={seconds + 1}",  # the load starts a second after it
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # stop() ends it by its process group
    )
    try:
        with contextlib.suppress(subprocess.TimeoutExpired):
            sampler.wait(timeout=1)  # py-spy refused at once (no ptrace rights): no load run for nothing
        if sampler.returncode is None:
            wrk(url, CLIENTS, seconds, scenario.script)
        log, _ = sampler.communicate(timeout=seconds + 30)
    finally:
        stop(sampler)
    if sampler.returncode != 0 or not output.exists():
        raise RuntimeError(f"py-spy failed (it needs ptrace rights over the server):\n{log}")
    return Profile(scenario, measured, read_stacks(output.read_text()))


def render(profiles: list[Profile], seconds: int) -> str:
    header = " | ".join(profile.scenario.name for profile in profiles)
    shares = [layer_shares(profile.stacks) for profile in profiles]
    lines = [
        "# Where the web server's Python time goes",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, Django {django.get_version()}, rq {rq.__version__}, "
        f"redis-py {redis.__version__}.",
        "",
        f"Command: `make bench-profile` (`.venv/bin/python bench/cpu_profile.py --seconds {seconds}`). The "
        "site runs under its production server (2 uvicorn workers, DEBUG off, rate and depth limits off) "
        f"against a private redis-server, with `wrk` at {CLIENTS} clients. For each endpoint, a {seconds} s "
        "run alone gives the rate and the CPU the web processes spend per request (from /proc); a second "
        f"run of {seconds} s is sampled by py-spy, {SAMPLES_PER_SECOND} times a second, in the thread of "
        "each web process that holds the GIL. Each sample is charged to the innermost frame outside "
        "Python's standard library: `json.dumps` called by Django is Django's, `socket.sendall` called by "
        "redis-py is redis-py's. asyncio's frames (and uvloop's C code under them) are the event loop's, "
        "a layer of its own; uvicorn's are its HTTP protocol code, httptools included. "
        "What runs without the GIL (the kernel's side of socket calls, threads waiting for the GIL) is "
        "not sampled: the shares are of the Python work, beside the whole CPU per request. py-spy reads "
        "the processes without pausing them (`--nonblocking`), so a few stacks are torn; they are "
        "charged like the others.",
        "",
        "## Share of the Python work, by layer",
        "",
        f"| layer | {header} |",
        "| --- |" + " --- |" * len(profiles),
        *[f"| {layer} | " + " | ".join(f"{share[layer]:.0%}" for share in shares) + " |" for layer in LAYER_ORDER],
        "| CPU ms/request (run alone) | " + " | ".join(f"{profile.measured.cpu_ms:.3f}" for profile in profiles) + " |",
        "| requests/s (run alone) | " + " | ".join(f"{profile.measured.rps:,.0f}" for profile in profiles) + " |",
        "| samples | " + " | ".join(f"{sum(profile.stacks.values()):,}" for profile in profiles) + " |",
        "",
        "## Hottest functions (innermost Python frame, share of samples)",
    ]
    for profile in profiles:
        lines += ["", f"### {profile.scenario.name}", "", "| function | share |", "| --- | --- |"]
        lines += [f"| `{function}` | {share:.1%} |" for function, share in hottest_functions(profile.stacks, 12)]
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each load run")
    parser.add_argument("--output", default=str(BENCH_DIR / "PROFILE.md"))
    args = parser.parse_args()
    if not PY_SPY.exists():
        sys.exit(f"{PY_SPY} is missing: install requirements-dev.txt")

    with tempfile.TemporaryDirectory() as scratch, redis_server(Path(scratch) / "redis") as (port, _):
        url = f"redis://127.0.0.1:{port}/0"
        connection = Redis.from_url(url)
        env = site_env(url, Path(scratch))
        web, base_url = start_asgi_server(env, None, "--workers", "2", "--log-level", "warning")
        profiles: list[Profile] = []
        try:

            def sampled(scenario: Scenario) -> Profile:
                samples = Path(scratch) / f"samples-{len(profiles)}.txt"
                return profile(scenario, base_url, web.pid, args.seconds, samples)

            profiles.append(sampled(Scenario("`POST /tasks`", "/tasks", BENCH_DIR / "post.lua")))
            connection.flushdb()  # the polled task alone in Redis, as in `make bench`
            task_id = post_task(base_url)
            profiles.append(sampled(Scenario("`GET /tasks/<id>`, queued", f"/tasks/{task_id}")))
            run_burst_worker(env)
            profiles.append(sampled(Scenario("`GET /tasks/<id>`, finished", f"/tasks/{task_id}")))
            profiles.append(sampled(Scenario("bare JSON view", "/bench/bare")))
        finally:
            stop(web)

    report = render(profiles, args.seconds)
    Path(args.output).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
