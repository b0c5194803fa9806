"""Jobs enqueued over HTTP and run by a real `manage.py rqworker` against a real redis-server."""

import signal
import time
import zlib

from rq import Queue
from rq.serializers import JSONSerializer

from tasks_app import health
from tests.support.http import create_task, task_status
from tests.support.processes import wait_until


def test_job_goes_queued_started_finished(live_server, start_worker):
    task_id = create_task(live_server.url, 1)
    first = task_status(live_server.url, task_id)
    assert first["task_status"] == "queued" and first["progress"] == 0

    worker = start_worker(unit_seconds=1.5)
    seen = []

    def finished():
        data = task_status(live_server.url, task_id)
        seen.append((data["task_status"], data["progress"]))
        return data if data["task_status"] == "finished" else None

    final = wait_until(finished, 20, "the job to finish", interval=0.1)
    assert worker.wait(timeout=10) == 0

    statuses = [status for status, _ in seen]
    assert "started" in statuses
    assert statuses.index("started") < statuses.index("finished")
    running_progress = [progress for status, progress in seen if status == "started"]
    assert any(0 < progress < 100 for progress in running_progress), seen
    assert running_progress == sorted(running_progress)  # never goes backwards
    assert final["task_result"] is True
    assert final["progress"] == 100
    assert final["error"] is None
    assert final["enqueued_at"] <= final["started_at"] <= final["ended_at"]


def test_failing_job_ends_failed_with_its_message(live_server, real_redis, start_worker):
    queue = Queue("default", connection=real_redis.connection, serializer=JSONSerializer)
    job = queue.enqueue("tests.support.jobs.explode", "the disk is full")

    assert start_worker().wait(timeout=30) == 0
    data = task_status(live_server.url, job.id)
    assert data["task_status"] == "failed"
    assert data["error"] == "ValueError: the disk is full"
    assert data["task_result"] is None
    assert data["ended_at"] is not None


def test_plain_rqworker_command_never_unpickles(real_redis, start_worker, tmp_path):
    """`manage.py rqworker` without --serializer still reads JSON and refuses pickled jobs."""
    pickled_marker = tmp_path / "pickled-job-ran"
    json_marker = tmp_path / "json-job-ran"
    Queue("default", connection=real_redis.connection).enqueue("tests.support.jobs.touch", str(pickled_marker))
    json_job = Queue("default", connection=real_redis.connection, serializer=JSONSerializer).enqueue(
        "tests.support.jobs.touch", str(json_marker)
    )

    start_worker(burst=False)
    wait_until(lambda: json_job.get_status() == "finished", 20, "the JSON job to run")
    assert json_marker.exists()
    assert not pickled_marker.exists()
    stored = real_redis.connection.hget(f"rq:job:{json_job.id}", "data")
    assert JSONSerializer.loads(zlib.decompress(stored))[0] == "tests.support.jobs.touch"


def test_workers_honour_queue_order(real_redis, start_worker, tmp_path):
    """A worker started as `rqworker high default low` takes high before default before low."""
    jobs = {}
    for name in ("low", "default", "high"):
        queue = Queue(name, connection=real_redis.connection, serializer=JSONSerializer)
        jobs[name] = queue.enqueue("tests.support.jobs.touch", str(tmp_path / name))

    assert start_worker().wait(timeout=30) == 0
    for job in jobs.values():
        job.refresh()
        assert job.get_status() == "finished"
    assert jobs["high"].started_at < jobs["default"].started_at < jobs["low"].started_at


def test_an_idle_worker_stops_within_five_seconds_of_sigterm(real_redis, start_worker):
    worker = start_worker("--with-scheduler", burst=False)
    wait_until(lambda: health.live_workers(), 20, "the worker to register")
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert time.monotonic() - started < 5  # every deploy and `docker compose down` waits for it
