"""RQ worker classes for `manage.py rqworker` (settings.RQ["WORKER_CLASS"] and --worker-class)."""

from redis.backoff import ExponentialBackoff
from redis.retry import Retry as RedisRetry
from rq import SimpleWorker, Worker
from rq.serializers import JSONSerializer

from tasks_app.signals import send_status_changed

# About 30 seconds of retries in all (0.2, 0.4, 0.8, 1.6, then every 2 s), each reconnection
# asking the sentinels anew: more than a Sentinel failover takes (see tests/integration/test_sentinel.py).
REDIS_OUTAGE_RETRIES = 18
REDIS_OUTAGE_MAX_WAIT_SECONDS = 2.0


def outage_retry() -> RedisRetry:
    """The retry policy of a worker's Redis clients."""
    return RedisRetry(ExponentialBackoff(cap=REDIS_OUTAGE_MAX_WAIT_SECONDS, base=0.1), REDIS_OUTAGE_RETRIES)


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
