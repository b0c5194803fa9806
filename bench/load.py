"""Load and reconciliation: N jobs through POST /tasks from C concurrent clients, W workers.

Starts its own redis-server, the site under uvicorn and W `manage.py rqworker` processes on
loopback (rate and depth limits off), sends the jobs, waits until the queues drain, then
reconciles: every acknowledged (202) job must be `finished`, and must have run exactly once
(RQ keeps a Result for every execution of a job).

Full run (the documented figure):   make bench-load      (10,000 jobs, 32 clients, 4 workers)
CI runs a smaller one through tests/integration/test_load.py.
"""

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from tests.support.processes import child_env, manage_py, redis_server, start_asgi_server, stop, wait_until
from tests.support.webserver import migrated_database_env


@dataclass
class LoadReport:
    jobs: int
    clients: int
    workers: int
    acknowledged: list[str] = field(default_factory=list)
    refused: int = 0
    errors: int = 0
    enqueue_seconds: float = 0.0
    drain_seconds: float = 0.0
    finished: int = 0
    never_ran: int = 0
    ran_twice: int = 0
    other_status: dict[str, int] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return len(self.acknowledged) - self.finished

    def lines(self) -> list[str]:
        total = self.enqueue_seconds + self.drain_seconds
        return [
            f"jobs sent: {self.jobs} from {self.clients} clients; workers: {self.workers}",
            f"acknowledged (202): {len(self.acknowledged)}; refused: {self.refused}; errors: {self.errors}",
            f"finished: {self.finished}; lost: {self.lost}; never ran: {self.never_ran}; ran twice: {self.ran_twice}",
            f"enqueue: {self.enqueue_seconds:.1f} s ({len(self.acknowledged) / self.enqueue_seconds:.0f} req/s)",
            f"end to end: {total:.1f} s ({self.finished / total:.0f} jobs/s finished)",
        ]


def send_jobs(host: str, port: int, jobs: int, clients: int, report: LoadReport) -> None:
    """Send `jobs` POST /tasks from `clients` threads over keep-alive connections."""
    lock = threading.Lock()
    remaining = iter(range(jobs))

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        body = json.dumps({"type": 0})
        while True:
            with lock:
                if next(remaining, None) is None:
                    break
            try:
                connection.request("POST", "/tasks", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=30)
                with lock:
                    report.errors += 1
                continue
            with lock:
                if response.status == 202:
                    report.acknowledged.append(json.loads(payload)["data"]["task_id"])
                else:
                    report.refused += 1
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def reconcile(connection: Redis, report: LoadReport) -> None:
    for job in fetch(connection, report.acknowledged):
        status = job.get_status(refresh=False) if job else "missing"
        if status == "finished":
            report.finished += 1
        else:
            report.other_status[status] = report.other_status.get(status, 0) + 1
        runs = len(job.results()) if job else 0
        report.never_ran += runs == 0
        report.ran_twice += runs > 1


def fetch(connection: Redis, task_ids: list[str]) -> list[Job | None]:
    return Job.fetch_many(task_ids, connection=connection, serializer=JSONSerializer)


def run_load(jobs: int, clients: int, workers: int, scratch: Path) -> LoadReport:
    report = LoadReport(jobs=jobs, clients=clients, workers=workers)
    with redis_server(scratch / "redis") as (redis_port, _):
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        settings = {"TASKS_RATE_LIMIT": "off", "TASKS_MAX_QUEUE_DEPTH": "0", "DJANGO_LOG_LEVEL": "WARNING"}
        env = migrated_database_env(child_env(REDIS_URL=redis_url, **settings), scratch)
        web, base_url = start_asgi_server(env)
        port = int(base_url.rsplit(":", 1)[1])
        pool = [manage_py("rqworker", "high", "default", "low", "--verbosity=0", env=env) for _ in range(workers)]
        connection = Redis.from_url(redis_url)
        try:
            started = time.monotonic()
            send_jobs("127.0.0.1", port, jobs, clients, report)
            report.enqueue_seconds = time.monotonic() - started
            drain_started = time.monotonic()
            wait_until(
                lambda: all_ended(connection, report.acknowledged), max(60, jobs / 20), "every job to end", interval=0.5
            )
            report.drain_seconds = time.monotonic() - drain_started
            reconcile(connection, report)
        finally:
            for process in [*pool, web]:
                stop(process)
            connection.close()
    return report


def all_ended(connection: Redis, task_ids: list[str]) -> bool:
    return all(job and job.get_status(refresh=False) in ("finished", "failed") for job in fetch(connection, task_ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        report = run_load(args.jobs, args.clients, args.workers, Path(scratch))
    print("\n".join(report.lines()))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}; cores: {os.cpu_count()}")
    sys.exit(0 if report.lost == 0 and report.ran_twice == 0 and report.never_ran == 0 else 1)


if __name__ == "__main__":
    main()
