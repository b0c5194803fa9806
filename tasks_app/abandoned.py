"""Find jobs whose worker died mid-job, and fail them (or retry them, per their policy).

A worker killed with SIGKILL, or a host that vanishes, leaves its job in RQ's started registry
with nobody to report it. RQ notices only when the registry entry expires (its heartbeat TTL,
a minute or more) and then during maintenance that runs every ten minutes, without telling
anyone. Here the live workers look every few seconds (tasks_app.workers) for started jobs whose
worker has stopped sending heartbeats, end them the way RQ would, and send the status signal
so the history row follows. `manage.py fail_abandoned_jobs` runs the same check by hand.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import django_rq
from django.conf import settings
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now, utcformat, utcparse
from rq.worker import Worker

from tasks_app import history, services
from tasks_app.signals import send_status_changed

logger = logging.getLogger(__name__)

# Written into each worker's Redis hash by tasks_app.workers.JSONWorker: how often it promises a
# heartbeat while a job runs. Workers that do not say (RQ's own, in-process ones) are judged only
# by whether their Redis key still exists.
HEARTBEAT_FIELD = "heartbeat_seconds"
# One worker in the whole cluster runs the check per interval.
CHECK_LOCK_KEY = "taskqueue:abandoned-jobs:check"


@dataclass(frozen=True)
class AbandonedJob:
    job_id: str
    queue: str
    worker_name: str
    outcome: str  # the job's new status: failed, or queued/scheduled for a retry
    reason: str


@dataclass(frozen=True)
class WorkerHealth:
    alive: bool
    reason: str  # why it counts as dead; empty when alive


def worker_health(connection: Redis, worker_name: str, moment: datetime | None = None) -> WorkerHealth:
    """Say whether a worker is alive: its key exists and, if it promises heartbeats, they are fresh."""
    key = Worker.redis_worker_namespace_prefix + worker_name
    last_heartbeat, heartbeat_seconds, death = connection.hmget(key, "last_heartbeat", HEARTBEAT_FIELD, "death")
    if last_heartbeat is None:
        return WorkerHealth(False, f"Worker died: {worker_name} is gone (its Redis key expired).")
    if death is not None:
        return WorkerHealth(False, f"Worker died: {worker_name} shut down while running this job.")
    silent_for = ((moment or now()) - utcparse(last_heartbeat.decode())).total_seconds()
    if heartbeat_seconds is not None and silent_for > settings.TASK_ABANDONED_AFTER_SECONDS:
        return WorkerHealth(
            False, f"Worker died: {worker_name} sent no heartbeat for {silent_for:.0f} s while running this job."
        )
    return WorkerHealth(True, "")


def fail_abandoned_jobs(connection: Redis | None = None, dry_run: bool = False) -> list[AbandonedJob]:
    """End every started job whose worker is dead; return what was (or, dry, would be) done."""
    connection = connection or services.get_connection()
    moment = now()
    found = []
    for queue_name in settings.RQ_QUEUES:
        registry = StartedJobRegistry(queue_name, connection=connection, serializer=JSONSerializer)
        # cleanup=False: RQ's own cleanup would fail expired jobs silently, without the signal.
        for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
            try:
                job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
            except NoSuchJobError:
                continue
            worker_name = execution_worker(connection, job_id, execution_id) or job.worker_name or ""
            health = worker_health(connection, worker_name, moment) if worker_name else WorkerHealth(True, "")
            if health.alive or job.get_status(refresh=True) != JobStatus.STARTED:
                continue
            outcome = expected_outcome(job) if dry_run else end_job(job, queue_name, execution_id, health.reason)
            found.append(AbandonedJob(job_id, queue_name, worker_name, outcome, health.reason))
    return found


def check_periodically(connection: Redis, worker_name: str) -> list[AbandonedJob]:
    """Run the check unless another worker ran it within the last interval."""
    interval = max(1, int(settings.TASK_ABANDONED_CHECK_SECONDS))
    if not connection.set(CHECK_LOCK_KEY, worker_name, nx=True, ex=interval):
        return []
    return check(connection)


def check(connection: Redis | None = None) -> list[AbandonedJob]:
    """End the jobs of dead workers, then catch up history rows still saying "started"."""
    found = fail_abandoned_jobs(connection)
    for item in found:
        logger.warning("job_id=%s queue=%s %s -> %s", item.job_id, item.queue, item.reason, item.outcome)
    # Rows left behind by changes that sent no signal (RQ's own cleanup, run by a dashboard page).
    history.sync_stale_rows(timedelta(seconds=settings.TASK_ABANDONED_AFTER_SECONDS))
    return found


def execution_worker(connection: Redis, job_id: str, execution_id: str) -> str:
    try:
        return Execution.fetch(execution_id, job_id, connection=connection).worker_name
    except ValueError:  # the execution's hash has expired
        return ""


def expected_outcome(job: Job) -> str:
    if not job.should_retry:
        return JobStatus.FAILED.value
    return JobStatus.SCHEDULED.value if job.get_retry_interval() else JobStatus.QUEUED.value


def end_job(job: Job, queue_name: str, execution_id: str, reason: str) -> str:
    """Retry the job if its policy has attempts left, else fail it with the reason; send the signal.

    The same steps as RQ's StartedJobRegistry.cleanup for one job, plus an end time and the signal.
    """
    queue = django_rq.get_queue(queue_name, connection=job.connection)
    registry = StartedJobRegistry(queue_name, connection=job.connection, serializer=JSONSerializer)
    retry = job.should_retry
    with job.connection.pipeline() as pipeline:
        registry.remove_execution(Execution(execution_id, job.id, connection=job.connection), pipeline=pipeline)
        if retry:
            job.meta["last_error"] = reason
            job.retry(queue, pipeline)  # saves the job, meta included
        else:
            job.ended_at = now()
            job.set_status(JobStatus.FAILED, pipeline=pipeline)
            pipeline.hset(job.key, "ended_at", utcformat(job.ended_at))
            job._handle_failure(reason, pipeline, worker_name=job.worker_name or "")
        pipeline.execute()
    if not retry:
        queue.enqueue_dependents(job)
    status = job.get_status(refresh=True).value
    send_status_changed(job, status, job.connection)
    return status
