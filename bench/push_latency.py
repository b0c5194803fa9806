"""Push latency: how long after a worker changes a job's status does a browser see it?

Starts its own redis-server, the site under uvicorn (ASGI, as in production) and one worker,
all on free loopback ports, then drives headless Chromium:

- push: the page opens an EventSource on /tasks/<id>/events before the job runs, and records
  when each event arrives; latency = arrival - the worker's timestamp of that change
  (`changed_at` for progress, `ended_at` for the finish).
- polling: the page polls GET /tasks/<id> once a second, as the fallback does; latency =
  when the poll first sees `finished` - `ended_at`.

Run:  make bench-push        (or .venv/bin/python bench/push_latency.py --jobs 60)
Writes bench/push_latency.md with the machine, the command and the figures.
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import sync_playwright

from tests.support.processes import PROJECT_ROOT, child_env, manage_py, redis_server, start_asgi_server, stop
from tests.support.webserver import migrated_database_env

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]

PUSH_JS = """
async ([count]) => {
  const samples = { progress: [], finished: [] };
  for (let i = 0; i < count; i++) {
    const reply = await fetch("/tasks", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify({type: 1})});
    const id = (await reply.json()).data.task_id;
    await new Promise((resolve, reject) => {
      const source = new EventSource(`/tasks/${id}/events`);
      const timer = setTimeout(() => { source.close(); reject(new Error("no finish event")); }, 20000);
      source.addEventListener("status", (event) => {
        const now = Date.now() / 1000;
        const data = JSON.parse(event.data);
        if (data.changed_at && data.task_status === "started" && data.progress > 0)
          samples.progress.push(now - data.changed_at);
        if (data.task_status === "finished") {
          if (data.changed_at) samples.finished.push(now - Date.parse(data.ended_at) / 1000);
          clearTimeout(timer); source.close(); resolve();
        }
      });
    });
  }
  return samples;
}
"""

POLL_JS = """
async ([count, interval]) => {
  const samples = [];
  const one = async () => {
    const reply = await fetch("/tasks", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify({type: 1})});
    const id = (await reply.json()).data.task_id;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, interval));
      const data = (await (await fetch(`/tasks/${id}`, {cache: "no-store"})).json()).data;
      if (data.task_status === "finished") {
        samples.push(Date.now() / 1000 - Date.parse(data.ended_at) / 1000);
        return;
      }
    }
  };
  // A few pollers at a time, as several open pages would.
  for (let i = 0; i < count; i += 5) await Promise.all(Array.from({length: Math.min(5, count - i)}, one));
  return samples;
}
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> str:
    ms = [value * 1000 for value in values]
    return (
        f"{len(ms)} | {statistics.median(ms):.1f} | {percentile(ms, 0.99):.1f} | {max(ms):.1f}"
        if ms
        else "0 | n/a | n/a | n/a"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60, help="jobs measured on each path")
    parser.add_argument("--output", default=str(PROJECT_ROOT / "bench" / "push_latency.md"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch, redis_server(Path(scratch) / "redis") as (redis_port, _):
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        env = child_env(REDIS_URL=redis_url, TASK_UNIT_SECONDS="0.3", DJANGO_LOG_LEVEL="WARNING")
        env = migrated_database_env(env, Path(scratch))
        web, base_url = start_asgi_server(env)
        worker = manage_py("rqworker", "high", "default", "low", "--verbosity=0", env=env)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page()
                page.goto(base_url + "/")
                started = time.monotonic()
                push = page.evaluate(PUSH_JS, [args.jobs])
                push_seconds = time.monotonic() - started
                started = time.monotonic()
                polled = page.evaluate(POLL_JS, [args.jobs, 1000])
                poll_seconds = time.monotonic() - started
                browser.close()
        finally:
            stop(worker)
            stop(web)

    report = f"""# Push latency: worker status change → browser

Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} cores, Python
{platform.python_version()}, {platform.platform()}), with:

    .venv/bin/python bench/push_latency.py --jobs {args.jobs}

Redis, the site under uvicorn (one process) and one `rqworker` on loopback; Debian's Chromium,
headless, runs the clients. Each job is type 1 with `TASK_UNIT_SECONDS=0.3`.

| path | samples | p50 (ms) | p99 (ms) | max (ms) |
| --- | --- | --- | --- | --- |
| push, progress event (worker's `changed_at` → EventSource) | {summary(push["progress"])} |
| push, finish event (worker's `ended_at` → EventSource) | {summary(push["finished"])} |
| polling every 1 s, finish (worker's `ended_at` → poll sees it) | {summary(polled)} |

Target: push p99 under 100 ms. The push path took {push_seconds:.1f} s for {args.jobs} jobs run
one after another; the polling path {poll_seconds:.1f} s, five jobs at a time.
"""
    Path(args.output).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
