"""The one place that talks to RQ: enqueue a task, look one up.

Views call these functions and turn their exceptions into HTTP answers; nothing else in
the app imports rq or redis directly.
"""

import logging
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import django_rq
from django.conf import settings
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry as RedisRetry
from redis.sentinel import Sentinel
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.worker import Worker
from rq.worker_registration import REDIS_WORKER_KEYS

from tasks_app import tasks
from tasks_app.signals import send_status_changed

logger = logging.getLogger(__name__)

TASK_TYPES = (0, 1, 2, 3)
DEFAULT_QUEUE = "default"
# Statuses after which a job never changes again; pollers stop here.
TERMINAL_STATUSES = frozenset({"finished", "failed", "stopped", "canceled"})

# RQ makes ids with uuid4(); anything outside this alphabet cannot be one of ours and is
# refused before it reaches Redis (no key games with ':' or '*', no path tricks).
TASK_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class QueueUnavailable(Exception):
    """Redis cannot be reached (down, unreachable or too slow)."""


class TaskNotFound(Exception):
    """No job with that id exists, or it has expired."""


@dataclass(frozen=True)
class TaskStatus:
    task_id: str
    task_status: str
    task_result: Any
    progress: int
    enqueued_at: str | None
    started_at: str | None
    ended_at: str | None
    error: str | None

    @property
    def is_terminal(self) -> bool:
        return self.task_status in TERMINAL_STATUSES

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_connections: dict[str, Redis] = {}


def get_connection(queue_name: str = DEFAULT_QUEUE) -> Redis:
    """Return this process's Redis client for a queue, built once and reused.

    django_rq.get_connection() builds a new client (and TCP connection) on every call; one
    client per process keeps a pool of open connections instead. Retries are off so that a
    dead Redis costs one connect timeout, not several with back-off in between.
    """
    config = settings.RQ_QUEUES[queue_name]
    key = config.get("URL") or repr((config["SENTINELS"], config["MASTER_NAME"], config.get("DB")))
    connection = _connections.get(key)
    if connection is None:
        connection = build_connection(config)
        _connections[key] = connection
    return connection


def enqueue_task(task_type: int, queue_name: str = DEFAULT_QUEUE) -> str:
    """Put a sleep task on a queue and return its job id."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}")
    queue = django_rq.get_queue(queue_name, connection=get_connection(queue_name))
    try:
        job = queue.enqueue(
            tasks.sleep_task,
            task_type,
            description=f"Sleep task, type {task_type}",
            meta={"progress": 0, "task_type": task_type},
            result_ttl=settings.TASK_RESULT_TTL,
            failure_ttl=settings.TASK_RESULT_TTL,
        )
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise QueueUnavailable(str(exc)) from exc
    logger.info("enqueued job_id=%s type=%s queue=%s", job.id, task_type, queue_name)
    send_status_changed(job, job.get_status(refresh=False).value, queue.connection)
    return job.id


def get_task_status(task_id: str) -> TaskStatus:
    """Read a job's status, progress, result and error from Redis."""
    if not TASK_ID_PATTERN.match(task_id):
        raise TaskNotFound(task_id)
    try:
        job = Job.fetch(task_id, connection=get_connection(), serializer=JSONSerializer)
        job.func_name  # noqa: B018 - decodes the payload now, so a non-JSON job is refused here
        status = job.get_status(refresh=False)
        result = job.return_value() if status == JobStatus.FINISHED else None
        error = failure_message(job) if status == JobStatus.FAILED else None
    except NoSuchJobError:
        raise TaskNotFound(task_id) from None
    except DeserializationError:
        # Not written by this site as JSON: treat it as absent rather than trusting it.
        logger.warning("job_id=%s is not a JSON job; refusing to read it", task_id)
        raise TaskNotFound(task_id) from None
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise QueueUnavailable(str(exc)) from exc

    progress = 100 if status == JobStatus.FINISHED else int(job.meta.get("progress", 0))
    return TaskStatus(
        task_id=job.id,
        task_status=str(status.value if isinstance(status, JobStatus) else status),
        task_result=result,
        progress=progress,
        enqueued_at=iso_utc(job.enqueued_at),
        started_at=iso_utc(job.started_at),
        ended_at=iso_utc(job.ended_at),
        error=error,
    )


def failure_message(job: Job) -> str:
    """Return the last line of a failed job's traceback, such as 'ValueError: boom'."""
    result = job.latest_result()
    exc_string = (result.exc_string if result else None) or ""
    lines = [line for line in exc_string.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "The job failed without an error message."


def iso_utc(moment: datetime | None) -> str | None:
    """Format a time as ISO 8601 in UTC with a Z suffix."""
    if moment is None:
        return None
    if moment.tzinfo is None:  # RQ stores UTC; older versions left it naive
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- Connections and health ---------------------------------------------------------------------


def build_connection(config: dict[str, Any]) -> Redis:
    """Build a Redis client without retries for a RQ_QUEUES entry: from its URL, or through Sentinel.

    The Sentinel client asks the sentinels for the master's address each time it opens a
    connection, so after a failover the next request reaches the promoted replica.
    """
    if "SENTINELS" not in config:
        return Redis.from_url(config["URL"], retry=RedisRetry(NoBackoff(), 0))
    sentinel = Sentinel(
        config["SENTINELS"],
        sentinel_kwargs={**config.get("SENTINEL_KWARGS", {}), "retry": RedisRetry(NoBackoff(), 0)},
        db=config.get("DB") or 0,
        password=config.get("PASSWORD"),
        socket_timeout=config.get("SOCKET_TIMEOUT"),
        **config.get("CONNECTION_KWARGS", {}),
    )
    return sentinel.master_for(config["MASTER_NAME"], retry=RedisRetry(NoBackoff(), 0))


@dataclass(frozen=True)
class Health:
    queues: dict[str, int]  # jobs waiting, per queue
    workers: int  # workers whose heartbeat has not expired

    def as_dict(self) -> dict[str, Any]:
        return {"redis": "ok", **asdict(self)}


def check_health() -> Health:
    """Count waiting jobs per queue and live workers, in two round trips to Redis."""
    connection = get_connection()
    try:
        with connection.pipeline(transaction=False) as pipeline:
            for name in settings.TASK_QUEUES:
                pipeline.llen(f"{Queue.redis_queue_namespace_prefix}{name}")
            pipeline.smembers(REDIS_WORKER_KEYS)
            *lengths, worker_keys = pipeline.execute()
        # RQ lets a worker's key expire when its heartbeat stops; the set may still name it.
        with connection.pipeline(transaction=False) as pipeline:
            for key in worker_keys:
                pipeline.exists(key)
            alive = sum(pipeline.execute()) if worker_keys else 0
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise QueueUnavailable(str(exc)) from exc
    return Health(queues=dict(zip(settings.TASK_QUEUES, lengths, strict=True)), workers=alive)


def live_workers(hostname: str | None = None) -> list[Worker]:
    """Return the workers whose heartbeat has not expired, only those on `hostname` if given."""
    try:
        workers = Worker.all(connection=get_connection(), serializer=JSONSerializer)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise QueueUnavailable(str(exc)) from exc
    return [worker for worker in workers if hostname is None or worker.hostname == hostname]
