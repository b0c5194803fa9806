"""Several workers on the same queues: each job runs exactly once, and the work is shared."""

import json
from collections import Counter

from rq import Queue, Worker
from rq.serializers import JSONSerializer

from tests.support.http import request
from tests.support.processes import free_port, http_answers, make_run, wait_until

JOBS = 30


def test_two_workers_share_the_queues_and_run_every_job_exactly_once(real_redis, start_worker, tmp_path):
    start_worker(burst=False, DJANGO_LOG_FORMAT="json")
    start_worker(burst=False, DJANGO_LOG_FORMAT="json")
    wait_until(lambda: Worker.count(connection=real_redis.connection) == 2, 30, "two workers to register")

    queues = [Queue(name, connection=real_redis.connection, serializer=JSONSerializer) for name in ("default", "low")]
    jobs = [
        queues[number % 2].enqueue("tests.support.recorded_jobs.record_execution", "executions", 0.1)
        for number in range(JOBS)
    ]

    def all_finished() -> bool:
        for job in jobs:
            job.refresh()
        return all(job.get_status() == "finished" for job in jobs)

    wait_until(all_finished, 60, "every job to finish", interval=0.2)
    executions = [json.loads(entry) for entry in real_redis.connection.lrange("executions", 0, -1)]
    runs = Counter(entry["job_id"] for entry in executions)
    assert runs == Counter({job.id: 1 for job in jobs})  # each job once, none twice, none missing
    per_worker = Counter(entry["worker"] for entry in executions)
    assert len(per_worker) == 2, per_worker  # both workers took a share
    assert all(count >= 3 for count in per_worker.values()), per_worker

    # Their logs: one JSON event per line, and RQ's events about a job carry its id as a field.
    events = [json.loads(line) for log in tmp_path.glob("worker-*.log") for line in log.read_text().splitlines()]
    logged_jobs = {event.get("job_id") for event in events if event["logger"] == "rq.worker"}
    assert {job.id for job in jobs} <= logged_jobs


def test_make_run_starts_as_many_workers_as_WORKERS_says(tmp_path):
    """`make run WORKERS=3` has honcho run three copies of the Procfile's worker."""
    web_port = free_port()
    env = {"WORKERS": "3", "PORT": str(web_port), "REDIS_PORT": str(free_port()), "REDIS_DIR": str(tmp_path / "redis")}
    with make_run(tmp_path / "run.log", **env) as run:
        base_url = f"http://127.0.0.1:{web_port}"
        wait_until(lambda: http_answers(f"{base_url}/healthz") or run.poll() is not None, 90, "the web server")
        assert run.poll() is None, (tmp_path / "run.log").read_text()
        wait_until(lambda: request(f"{base_url}/healthz").body["data"]["workers"] == 3, 30, "three live workers")
