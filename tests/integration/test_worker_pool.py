"""Several workers on the same queues: each job runs exactly once, and the work is shared."""

import json
import signal
from collections import Counter

from rq import Queue, Worker
from rq.serializers import JSONSerializer

from tests.support.http import request
from tests.support.processes import child_env, free_port, manage_py, stop, wait_until

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


def test_runstack_starts_as_many_workers_as_WORKERS_says(tmp_path):
    """`WORKERS=3 make run` ends in `manage.py runstack` with WORKERS=3 in its environment."""
    web_port = free_port()
    log = tmp_path / "runstack.log"
    env = child_env(WORKERS="3", PORT=str(web_port), REDIS_PORT=str(free_port()), PYTHONUNBUFFERED="1")
    env.pop("REDIS_URL", None)
    stack = manage_py("runstack", f"--data-dir={tmp_path / 'redis'}", env=env, log_path=log)
    try:
        wait_until(lambda: "taskqueue is running at" in log.read_text() or stack.poll() is not None, 60, "the stack")
        assert stack.poll() is None, log.read_text()
        base_url = f"http://127.0.0.1:{web_port}"
        wait_until(lambda: request(f"{base_url}/healthz").body["data"]["workers"] == 3, 30, "three live workers")

        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=30) == 0, log.read_text()
        output = log.read_text()
        for number in (1, 2, 3):
            assert f"stopped worker-{number}" in output
    finally:
        stop(stack)
