"""RQ worker classes for `manage.py rqworker`: RQ's own, with documented options."""

from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.retry import Retry as RedisRetry
from rq import Worker
from rq.serializers import JSONSerializer

from tasks_app.callbacks import on_work_horse_killed

# About 30 seconds of retries in all, each asking the sentinels anew: more than a failover takes.
REDIS_OUTAGE_RETRIES = 18
REDIS_OUTAGE_MAX_WAIT_SECONDS = 2.0
# RQ's idle worker waits for a job this much less than its worker_ttl, then heartbeats and maintains.
RQ_IDLE_WAIT_MARGIN_SECONDS = 15


class JSONWorkerOptions:
    """Always read and write jobs as JSON, heartbeat every WORKER_HEARTBEAT_SECONDS, maintain as often.

    django-rq's `rqworker` passes `--serializer` (pickle) and `--worker-ttl` whatever the settings say:
    both are replaced, so a job written as pickle is refused instead of being unpickled.
    """

    def __init__(self, *args, serializer=None, worker_ttl=None, **kwargs):
        beat = settings.WORKER_HEARTBEAT_SECONDS
        kwargs.setdefault("job_monitoring_interval", beat)  # heartbeats while a job runs
        kwargs.setdefault("maintenance_interval", beat)  # RQ's default (10 min) leaves dead workers' jobs waiting
        kwargs.setdefault("work_horse_killed_handler", on_work_horse_killed)
        # An idle worker wakes every `beat` seconds to heartbeat and run the maintenance.
        worker_ttl = beat + RQ_IDLE_WAIT_MARGIN_SECONDS
        super().__init__(*args, serializer=JSONSerializer, worker_ttl=worker_ttl, **kwargs)
        # Unlike the web, a worker waits for Redis to come back rather than quit in the middle of a job.
        backoff = ExponentialBackoff(cap=REDIS_OUTAGE_MAX_WAIT_SECONDS, base=0.1)
        for client in {self.connection, *(queue.connection for queue in self.queues)}:
            client.set_retry(RedisRetry(backoff, REDIS_OUTAGE_RETRIES))


class JSONWorker(JSONWorkerOptions, Worker):
    """The default: each job runs in a forked child, so a crashing job cannot kill the worker."""

    def get_heartbeat_ttl(self, job) -> int:
        # How long a running job outlives its worker's last heartbeat: RQ's extra minute is too long
        # for a killed worker's job to be retried within half a minute.
        return int(settings.TASK_ABANDONED_AFTER_SECONDS)

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        if pipeline is None:  # a running job's heartbeats come through maintain_heartbeats
            self.register_again_if_forgotten()
        super().heartbeat(timeout, pipeline)

    def maintain_heartbeats(self, job) -> None:
        if self.register_again_if_forgotten():
            self.set_current_job_id(job.id)
        super().maintain_heartbeats(job)

    def register_again_if_forgotten(self) -> bool:
        """Register anew if Redis lost this worker (restarted empty): RQ's heartbeat never does (rq/rq#469)."""
        if self.key in Worker.all_keys(connection=self.connection):
            return False
        self.log.warning("Worker %s: unknown to Redis (restarted empty?), registering again", self.name)
        self.register_death()
        self.register_birth()
        self.set_state(self.get_state())
        return True
