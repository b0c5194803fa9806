"""RQ worker classes for `manage.py rqworker` (settings.RQ["WORKER_CLASS"] and --worker-class)."""

import time

import rq.worker.base
from redis.backoff import ExponentialBackoff
from redis.retry import Retry as RedisRetry
from rq import SimpleWorker, Worker
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from tasks_app.signals import send_status_changed

# About 30 seconds of retries in all (0.2, 0.4, 0.8, 1.6, then every 2 s), each reconnection
# asking the sentinels anew: more than a Sentinel failover takes (see tests/integration/test_sentinel.py).
REDIS_OUTAGE_RETRIES = 18
REDIS_OUTAGE_MAX_WAIT_SECONDS = 2.0


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
        super().__init__(*args, serializer=JSONSerializer, **kwargs)
        # The web answers 503 at once when Redis is down; a worker instead waits for Redis to
        # come back (a restart, a Sentinel failover) rather than quit in the middle of a job.
        # Each queue may hold a client of its own, so every one of them gets the policy.
        for connection in {
            id(client): client for client in (self.connection, *(q.connection for q in self.queues))
        }.values():
            connection.set_retry(outage_retry())

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
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry, exc_string=exc_string)
        # The job ran in a forked child: this process's copy has stale meta (progress).
        job.get_meta(refresh=True)
        # failed, stopped, or queued/scheduled again when a retry policy applies
        send_status_changed(job, job.get_status(refresh=True).value, self.connection)


class JSONWorker(ReportingJSONMixin, Worker):
    """The default: each job runs in a forked child, so a crashing job cannot kill the worker."""


class InProcessJSONWorker(ReportingJSONMixin, SimpleWorker):
    """Runs jobs inside the worker process: no fork per job, faster, but a job can crash it."""
