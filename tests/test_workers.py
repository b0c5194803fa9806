"""The worker class's options, which rest on how RQ uses them (rq/worker/base.py)."""

from django.conf import settings
from rq.job import Job

from tasks_app.workers import JSONWorker


def test_an_idle_worker_wakes_every_heartbeat_and_maintains_as_often(fake_redis):
    worker = JSONWorker(["default"], connection=fake_redis, worker_ttl=420)  # rqworker's default is ignored
    # RQ waits for a job dequeue_timeout seconds, then heartbeats and runs its maintenance if due.
    assert worker.dequeue_timeout == settings.WORKER_HEARTBEAT_SECONDS
    assert worker.maintenance_interval == settings.WORKER_HEARTBEAT_SECONDS
    assert worker.job_monitoring_interval == settings.WORKER_HEARTBEAT_SECONDS


def test_a_running_jobs_entry_outlives_its_last_heartbeat_by_the_abandoned_delay(fake_redis):
    worker = JSONWorker(["default"], connection=fake_redis)
    job = Job.create(print, connection=fake_redis, timeout=3600)
    # RQ's own TTL adds a minute; a killed worker's job would wait that long for RQ's cleanup.
    assert worker.get_heartbeat_ttl(job) == settings.TASK_ABANDONED_AFTER_SECONDS
