"""RQ worker classes for `manage.py rqworker` (settings.RQ["WORKER_CLASS"] and --worker-class)."""

import logging
import time

import rq.worker.base
from django.conf import settings
from django.db import close_old_connections, connections
from redis.backoff import ExponentialBackoff
from redis.retry import Retry as RedisRetry
from rq import SimpleWorker, Worker
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from tasks_app.signals import send_status_changed

logger = logging.getLogger(__name__)

# About 30 seconds of retries in all (0.2, 0.4, 0.8, 1.6, then every 2 s), each reconnection
# asking the sentinels anew: more than a Sentinel failover takes (see tests/integration/test_sentinel.py).
REDIS_OUTAGE_RETRIES = 18
REDIS_OUTAGE_MAX_WAIT_SECONDS = 2.0
# How often a worker writes the history rows of newly enqueued jobs (history.record_new_jobs).
NEW_JOBS_RECORD_SECONDS = 1.0


def outage_retry() -> RedisRetry:
    """The retry policy of a worker's Redis clients."""
    return RedisRetry(ExponentialBackoff(cap=REDIS_OUTAGE_MAX_WAIT_SECONDS, base=0.1), REDIS_OUTAGE_RETRIES)


class LookaheadScheduler(RQScheduler):
    """RQ's scheduler, moving each delayed job to its queue at its due time, not up to 1 s late.

    RQ's scheduler wakes once a second. After each pass this one also waits for the jobs that
    fall due before the next pass, and enqueues them on time.
    """

    def enqueue_scheduled_jobs(self) -> None:
        super().enqueue_scheduled_jobs()
        next_pass = time.time() + self.interval
        while (due := self.next_due_time()) is not None and due < next_pass:
            time.sleep(max(0.0, due - time.time()))
            super().enqueue_scheduled_jobs()

    def next_due_time(self) -> float | None:
        """The Unix time of the earliest delayed job in the queues this scheduler holds locks for."""
        earliest = None
        for name in self._acquired_locks:
            key = ScheduledJobRegistry(name, connection=self.connection, serializer=self.serializer).key
            first = self.connection.zrange(key, 0, 0, withscores=True)
            if first and (earliest is None or first[0][1] < earliest):
                earliest = first[0][1]
        return earliest


class ReportingJSONMixin:
    """Always read and write jobs as JSON, and report every status change.

    django-rq's `rqworker` passes `--serializer` (pickle by default) straight to the worker,
    whatever RQ_QUEUES says. Ignoring that argument keeps the plain command safe: a job
    written to Redis as pickle is refused instead of being unpickled.
    """

    def __init__(self, *args, serializer=None, **kwargs):
        # RQ's default (30 s) makes a dead worker's job wait minutes to be noticed (abandoned.py).
        kwargs.setdefault("job_monitoring_interval", settings.WORKER_HEARTBEAT_SECONDS)
        super().__init__(*args, serializer=JSONSerializer, **kwargs)
        # The web answers 503 at once when Redis is down; a worker instead waits for Redis to
        # come back (a restart, a Sentinel failover) rather than quit in the middle of a job.
        # Each queue may hold a client of its own, so every one of them gets the policy.
        for connection in {
            id(client): client for client in (self.connection, *(q.connection for q in self.queues))
        }.values():
            connection.set_retry(outage_retry())

        self.next_abandoned_check = self.next_new_jobs_record = 0.0
        self.last_beat = self.in_touch_since = time.monotonic()

    def _start_scheduler(self, *args, **kwargs) -> None:
        # RQ builds its scheduler here from the name RQScheduler in its worker module, with no
        # way to pass a class; swap in ours for the duration of the call.
        original = rq.worker.base.RQScheduler
        rq.worker.base.RQScheduler = LookaheadScheduler
        try:
            super()._start_scheduler(*args, **kwargs)
        finally:
            rq.worker.base.RQScheduler = original

    def prepare_job_execution(self, job, remove_from_intermediate_queue: bool = False) -> None:
        super().prepare_job_execution(job, remove_from_intermediate_queue)
        send_status_changed(job, "started", self.connection)

    def handle_job_success(self, job, queue, started_job_registry) -> None:
        super().handle_job_success(job, queue, started_job_registry)
        send_status_changed(job, "finished", self.connection)

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string: str = "") -> None:
        if exc_string and job.should_retry and self._stopped_job_id != job.id:
            # RQ keeps no result for a failure it retries; the history shows why the attempt failed.
            job.meta["last_error"] = exc_string.strip().splitlines()[-1]
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry, exc_string=exc_string)
        # The job ran in a forked child: this process's copy has stale meta (progress).
        job.get_meta(refresh=True)
        # failed, stopped, or queued/scheduled again when a retry policy applies
        send_status_changed(job, job.get_status(refresh=True).value, self.connection)

    @property
    def dequeue_timeout(self) -> int:
        # An idle worker wakes this often to heartbeat, record new jobs and look for abandoned ones.
        wake = min(NEW_JOBS_RECORD_SECONDS, settings.TASK_ABANDONED_CHECK_SECONDS)
        return max(1, min(super().dequeue_timeout, int(wake)))

    def heartbeat(self, timeout=None, pipeline=None) -> None:
        super().heartbeat(timeout, pipeline=pipeline)
        if pipeline is None and not self.is_horse:
            self.keep_books()

    def keep_books(self) -> None:
        """After a heartbeat (before each job, and every few seconds when idle or busy).

        Records newly enqueued jobs in the history about once a second, and every few seconds
        fails or retries jobs whose worker died (one worker at a time does that). Only a worker
        that has itself been in touch with Redis for a while judges the others: after a Redis
        outage every worker's heartbeat is old, and the busy ones need a moment to send the next.
        """
        moment = time.monotonic()
        if moment - self.last_beat > 2 * max(settings.WORKER_HEARTBEAT_SECONDS, settings.TASK_ABANDONED_CHECK_SECONDS):
            self.in_touch_since = moment
        self.last_beat = moment
        record_new_jobs = moment >= self.next_new_jobs_record
        look_for_abandoned = (
            moment >= self.next_abandoned_check
            and moment - self.in_touch_since >= settings.TASK_ABANDONED_AFTER_SECONDS
        )
        if not (record_new_jobs or look_for_abandoned):
            return
        if record_new_jobs:
            self.next_new_jobs_record = moment + NEW_JOBS_RECORD_SECONDS
        if look_for_abandoned:
            self.next_abandoned_check = moment + settings.TASK_ABANDONED_CHECK_SECONDS
        from tasks_app import abandoned, history

        # Never let bookkeeping take the worker down; the next round tries again.
        try:
            # Between jobs, like Django between requests: drop a broken or expired database connection.
            # Not inside a transaction, as when a test runs an in-process worker.
            if not any(connection.in_atomic_block for connection in connections.all()):
                close_old_connections()
            if record_new_jobs:
                history.record_new_jobs()
        except Exception:
            logger.exception("worker=%s could not record new jobs in the history", self.name)
        if look_for_abandoned:
            try:
                abandoned.check_periodically(self.connection, self.name)
            except Exception:
                logger.exception("worker=%s could not check for abandoned jobs", self.name)


class JSONWorker(ReportingJSONMixin, Worker):
    """The default: each job runs in a forked child, so a crashing job cannot kill the worker."""

    def serialize(self) -> dict:
        # Tells abandoned.py how often this worker heartbeats while a job runs.
        from tasks_app.abandoned import HEARTBEAT_FIELD

        return {**super().serialize(), HEARTBEAT_FIELD: self.job_monitoring_interval}

    def maintain_heartbeats(self, job) -> None:
        super().maintain_heartbeats(job)
        self.keep_books()  # busy workers too

    def fork_work_horse(self, job, queue) -> None:
        # A database connection must not be shared by two processes: each side opens its own.
        connections.close_all()
        super().fork_work_horse(job, queue)


class InProcessJSONWorker(ReportingJSONMixin, SimpleWorker):
    """Runs jobs inside the worker process: no fork per job, faster, but a job can crash it."""
