"""Jobs whose worker died: found by the heartbeat their worker stopped sending, failed or retried, against fakeredis.

tests/integration/test_history.py kills real workers; these cover each rule on its own.
"""

from datetime import timedelta

import pytest
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import now, utcformat

from tasks_app import abandoned, services
from tasks_app.models import JobRecord
from tasks_app.signals import send_status_changed
from tasks_app.workers import InProcessJSONWorker

pytestmark = pytest.mark.django_db

WORKER = "worker-on-a-lost-host"


@pytest.fixture
def no_retries(settings):
    settings.TASK_POLICIES = {"sleep": {"timeout": 60, "max_retries": 0, "retry_intervals": [0]}}


def start_on(connection, worker_name: str = WORKER) -> Job:
    """Enqueue a job and mark it running on `worker_name`, as that worker's fork would."""
    job = Job.fetch(services.enqueue_task(1), connection=connection, serializer=JSONSerializer)
    with connection.pipeline() as pipeline:
        Execution.create(job, ttl=600, pipeline=pipeline, worker_name=worker_name)
        job.prepare_for_execution(worker_name, pipeline)
        pipeline.execute()
    send_status_changed(job, "started", connection)
    return job


def last_seen(connection, seconds_ago: float, promises_heartbeats: bool = True, worker_name: str = WORKER) -> None:
    """Write the worker's Redis hash as RQ does, its last heartbeat `seconds_ago`."""
    mapping = {"last_heartbeat": utcformat(now() - timedelta(seconds=seconds_ago))}
    if promises_heartbeats:
        mapping[abandoned.HEARTBEAT_FIELD] = "5"
    connection.hset(f"rq:worker:{worker_name}", mapping=mapping)


def status(job: Job) -> str:
    return job.get_status(refresh=True).value


def test_a_job_whose_worker_went_silent_is_failed_with_the_reason(fake_redis, no_retries):
    job = start_on(fake_redis)
    last_seen(fake_redis, seconds_ago=60)
    [found] = abandoned.fail_abandoned_jobs(fake_redis)
    assert (found.job_id, found.worker_name, found.outcome) == (job.id, WORKER, "failed")
    assert status(job) == "failed"
    assert job.id in job.failed_job_registry
    assert job.id not in job.started_job_registry
    record = JobRecord.objects.get(job_id=job.id)
    assert record.status == "failed"
    assert record.error == f"Worker died: {WORKER} sent no heartbeat for 60 s while running this job."
    assert record.ended_at is not None


def test_a_job_whose_worker_key_is_gone_is_failed(fake_redis, no_retries):
    job = start_on(fake_redis)
    abandoned.fail_abandoned_jobs(fake_redis)
    assert status(job) == "failed"
    assert JobRecord.objects.get(job_id=job.id).error == f"Worker died: {WORKER} is gone (its Redis key expired)."


def test_a_job_is_retried_when_its_policy_has_attempts_left(fake_redis, settings):
    settings.TASK_POLICIES = {"sleep": {"timeout": 60, "max_retries": 1, "retry_intervals": [0]}}
    job = start_on(fake_redis)
    last_seen(fake_redis, seconds_ago=60)
    [found] = abandoned.fail_abandoned_jobs(fake_redis)
    assert found.outcome == "queued"
    assert status(job) == "queued"
    record = JobRecord.objects.get(job_id=job.id)
    assert (record.status, record.attempt, record.max_attempts) == ("queued", 2, 2)
    assert record.error.startswith(f"Worker died: {WORKER} ")


@pytest.mark.parametrize(
    ("seconds_ago", "promises_heartbeats"),
    [(3, True), (60, False)],  # fresh; or a worker (RQ's own) that only keeps its key alive
)
def test_jobs_of_live_workers_are_left_alone(fake_redis, no_retries, seconds_ago, promises_heartbeats):
    job = start_on(fake_redis)
    last_seen(fake_redis, seconds_ago, promises_heartbeats)
    assert abandoned.fail_abandoned_jobs(fake_redis) == []
    assert status(job) == "started"


def test_a_dry_run_changes_nothing(fake_redis, no_retries):
    job = start_on(fake_redis)
    [found] = abandoned.fail_abandoned_jobs(fake_redis, dry_run=True)
    assert found.outcome == "failed"
    assert status(job) == "started"
    assert JobRecord.objects.get(job_id=job.id).status == "started"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_live_workers_judge_only_after_being_in_touch_with_redis_for_a_while(fake_redis, no_retries, monkeypatch):
    clock = Clock()
    monkeypatch.setattr("tasks_app.workers.time.monotonic", clock)
    checker = InProcessJSONWorker(["default"], connection=fake_redis)  # in touch since t=1000
    job = start_on(fake_redis)
    last_seen(fake_redis, seconds_ago=60)

    def beat_at(moment: float) -> str:
        clock.now = moment
        fake_redis.delete(abandoned.CHECK_LOCK_KEY)  # the lock's expiry runs on real time
        checker.heartbeat()
        return status(job)

    assert [beat_at(t) for t in (1005, 1010)] == ["started", "started"]  # in touch for 10 s: too soon
    # Then Redis is out of reach for 20 s: after it, every worker's last heartbeat looks old.
    assert beat_at(1040) == "started"
    assert beat_at(1050) == "started"
    assert beat_at(1055) == "failed"  # in touch again for TASK_ABANDONED_AFTER_SECONDS
