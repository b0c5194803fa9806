"""RQ worker classes for `manage.py rqworker` (settings.RQ["WORKER_CLASS"] and --worker-class).

RQ's own worker with documented options: how often it heartbeats, and how often it runs RQ's
maintenance, which fails or retries the jobs of dead workers (StartedJobRegistry.cleanup, which
calls the job's on_failure callback). Job outcomes reach the history through tasks_app.callbacks.
"""

from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.retry import Retry as RedisRetry
from rq import SimpleWorker, Worker
from rq.serializers import JSONSerializer

from tasks_app.callbacks import on_work_horse_killed

# About 30 seconds of retries in all (0.2, 0.4, 0.8, 1.6, then every 2 s), each reconnection
# asking the sentinels anew: more than a Sentinel failover takes (see tests/integration/test_sentinel.py).
REDIS_OUTAGE_RETRIES = 18
REDIS_OUTAGE_MAX_WAIT_SECONDS = 2.0
# RQ's idle worker waits for a job this much less than its worker_ttl, then heartbeats and maintains.
RQ_IDLE_WAIT_MARGIN_SECONDS = 15


def outage_retry() -> RedisRetry:
    """The retry policy of a worker's Redis clients."""
    return RedisRetry(ExponentialBackoff(cap=REDIS_OUTAGE_MAX_WAIT_SECONDS, base=0.1), REDIS_OUTAGE_RETRIES)


class JSONWorkerOptions:
    """Always read and write jobs as JSON, heartbeat every WORKER_HEARTBEAT_SECONDS, maintain as often.

    django-rq's `rqworker` passes `--serializer` (pickle by default) and `--worker-ttl` (420 s) to
    the worker whatever the settings say; both are replaced here. Ignoring the serializer keeps the
    plain command safe: a job written to Redis as pickle is refused instead of being unpickled.
    """

    def __init__(self, *args, serializer=None, worker_ttl=None, **kwargs):
        beat = settings.WORKER_HEARTBEAT_SECONDS
        kwargs.setdefault("job_monitoring_interval", beat)  # heartbeats while a job runs
        kwargs.setdefault("maintenance_interval", beat)  # RQ's default (10 min) leaves dead workers' jobs waiting
        kwargs.setdefault("work_horse_killed_handler", on_work_horse_killed)
        # An idle worker wakes every `beat` seconds to heartbeat and run the maintenance.
        worker_ttl = beat + RQ_IDLE_WAIT_MARGIN_SECONDS
        super().__init__(*args, serializer=JSONSerializer, worker_ttl=worker_ttl, **kwargs)
        # The web answers 503 at once when Redis is down; a worker instead waits for Redis to
        # come back (a restart, a Sentinel failover) rather than quit in the middle of a job.
        # Each queue may hold a client of its own, so every one of them gets the policy.
        for connection in {
            id(client): client for client in (self.connection, *(q.connection for q in self.queues))
        }.values():
            connection.set_retry(outage_retry())


class JSONWorker(JSONWorkerOptions, Worker):
    """The default: each job runs in a forked child, so a crashing job cannot kill the worker."""

    def get_heartbeat_ttl(self, job) -> int:
        # How long a running job's started-registry entry outlives its worker's last heartbeat.
        # RQ adds a fixed minute to the heartbeat interval, too long for a killed worker's job
        # to be failed or retried within half a minute; TASK_ABANDONED_AFTER_SECONDS exceeds two
        # heartbeats (settings.py checks it).
        return int(settings.TASK_ABANDONED_AFTER_SECONDS)


class InProcessJSONWorker(JSONWorkerOptions, SimpleWorker):
    """Runs jobs inside the worker process: no fork per job, faster, but a job can crash it.

    It sends no heartbeat while a job runs, so it keeps RQ's time-limit-based started-registry TTL.
    """
