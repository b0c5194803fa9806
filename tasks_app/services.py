"""The one place that talks to RQ: enqueue, look up, cancel and requeue tasks.

Views call these functions and turn their exceptions into HTTP answers; nothing else in
the app builds queues or fetches jobs.
"""

import contextlib
import logging
import math
import re
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import django_rq
import redis.asyncio
import redis.asyncio.sentinel
from django.conf import settings
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry as RedisRetry
from redis.sentinel import Sentinel
from rq import Retry
from rq.command import send_stop_job_command
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import CanceledJobRegistry, ScheduledJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.worker import Worker
from rq.worker_registration import REDIS_WORKER_KEYS

from taskqueue_site.settings import parse_rate
from tasks_app import emails, redis_reads, tasks, thumbnails
from tasks_app.redis_sentinel import FailoverFollowingAsyncConnection
from tasks_app.signals import send_status_changed

logger = logging.getLogger(__name__)

TASK_TYPES = (0, 1, 2, 3)
DEFAULT_QUEUE = "default"
# Statuses after which a job never changes again; pollers and streams stop here.
TERMINAL_STATUSES = frozenset({"finished", "failed", "stopped", "canceled"})
# Waiting statuses: cancelling one of these means it never runs.
WAITING_STATUSES = frozenset({"queued", "scheduled", "deferred"})
MAX_DELAY_SECONDS = 7 * 24 * 3600

# RQ makes ids with uuid4(); anything outside this alphabet cannot be one of ours and is
# refused before it reaches Redis (no key games with ':' or '*', no path tricks).
TASK_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Ids of jobs enqueued here whose job-history row is not written yet. Each id is pushed in the
# pipeline that writes the job (so a job and its id are stored together or not at all) and the
# rows are written in batches by history.record_new_jobs, off the request.
NEW_JOBS_KEY = "taskqueue:history:new"


class QueueUnavailable(Exception):
    """Redis cannot be reached (down, unreachable or too slow)."""


class TaskNotFound(Exception):
    """No job with that id exists, or it has expired."""


class RateLimited(Exception):
    """The client sent more new tasks than TASKS_RATE_LIMIT allows."""

    def __init__(self, retry_after: int, limit: str):
        super().__init__(f"Too many new tasks: the limit is {limit} per client. Retry in {retry_after} s.")
        self.retry_after = retry_after


class QueueFull(Exception):
    """The queue is deeper than TASKS_MAX_QUEUE_DEPTH: new work would only bury the workers."""

    def __init__(self, queue_name: str, depth: int):
        super().__init__(f"The {queue_name} queue already holds {depth} waiting tasks; try again later.")


class TaskStateConflict(Exception):
    """The job's status does not allow the operation (HTTP 409)."""

    def __init__(self, message: str, status: str):
        super().__init__(message)
        self.status = status


class TaskAlreadyEnded(TaskStateConflict):
    """The job has finished, failed, stopped or been canceled: there is nothing to cancel."""

    def __init__(self, task_id: str, status: str):
        super().__init__(f"Task {task_id} has already ended ({status}).", status)


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
    queue: str
    attempt: int
    max_attempts: int
    scheduled_for: str | None

    @property
    def is_terminal(self) -> bool:
        return self.task_status in TERMINAL_STATUSES

    def as_dict(self) -> dict[str, Any]:
        # Shallow: dataclasses.asdict deep-copies the result, for nothing, on every status request.
        return dict(vars(self))


_connections: dict[str, Redis] = {}
_queues: dict[tuple[str, int], Queue] = {}


@contextmanager
def redis_outage_as_unavailable() -> Iterator[None]:
    """Turn a lost or hung Redis connection into QueueUnavailable (HTTP 503) for the callers."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise QueueUnavailable(str(exc)) from exc


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


def get_queue(queue_name: str) -> Queue:
    """Return this process's django-rq queue object for a name, built once per Redis client.

    django_rq.get_queue() resolves the queue's settings and serializer on every call, a tenth of
    the time of a whole POST /tasks. The cached queue holds its client, so a key stays unique.
    """
    connection = get_connection(queue_name)
    key = (queue_name, id(connection))
    queue = _queues.get(key)
    if queue is None:
        queue = _queues[key] = django_rq.get_queue(queue_name, connection=connection)
    return queue


def task_policy(kind: str) -> dict[str, Any]:
    """Return the timeout and retry policy of a kind of task (settings.TASK_POLICIES)."""
    return settings.TASK_POLICIES[kind]


def admit_submission(client: str, queue_name: str = DEFAULT_QUEUE) -> None:
    """Refuse new work from a client over its rate, or into a queue at its depth limit.

    A fixed window per client, counted in Redis so that every web process shares it.
    """
    rate = parse_rate(settings.TASKS_RATE_LIMIT)
    connection = get_connection(queue_name)
    with redis_outage_as_unavailable():
        if rate is not None:
            allowed, window = rate
            now = time.time()
            key = f"taskqueue:rate:{client}:{int(now // window)}"
            with connection.pipeline() as pipeline:
                used, _ = pipeline.incr(key).expire(key, window + 1).execute()
            if used > allowed:
                raise RateLimited(retry_after=max(1, math.ceil(window - now % window)), limit=settings.TASKS_RATE_LIMIT)
        depth_limit = settings.TASKS_MAX_QUEUE_DEPTH
        if depth_limit:
            # Delayed jobs count too: they all land on the queue when they fall due.
            with connection.pipeline(transaction=False) as pipeline:
                pipeline.llen(f"rq:queue:{queue_name}")
                pipeline.zcard(ScheduledJobRegistry(queue_name, connection=connection).key)
                depth = sum(pipeline.execute())
            if depth >= depth_limit:
                raise QueueFull(queue_name, depth)


def enqueue_task(
    task_type: int,
    *,
    queue_name: str = DEFAULT_QUEUE,
    delay: int = 0,
    submitter: dict[str, Any] | None = None,
) -> str:
    """Put a sleep task on a queue, now or after `delay` seconds, and return its job id."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}")
    return enqueue_call(
        tasks.sleep_task,
        (task_type,),
        kind="sleep",
        description=f"Sleep task, type {task_type}",
        meta={"task_type": task_type},
        queue_name=queue_name,
        delay=delay,
        submitter=submitter,
    )


def enqueue_call(
    func: Any,
    args: tuple,
    *,
    kind: str,
    description: str,
    meta: dict[str, Any] | None = None,
    queue_name: str = DEFAULT_QUEUE,
    delay: int = 0,
    submitter: dict[str, Any] | None = None,
) -> str:
    """Enqueue any job under the timeout and retry policy of its kind; return its id."""
    if queue_name not in settings.TASK_QUEUES:
        raise ValueError(f"unknown queue {queue_name!r}")
    if not 0 <= delay <= MAX_DELAY_SECONDS:
        raise ValueError(f"delay must be between 0 and {MAX_DELAY_SECONDS} seconds")
    policy = task_policy(kind)
    retry = Retry(max=policy["max_retries"], interval=policy["retry_intervals"]) if policy["max_retries"] else None
    queue = get_queue(queue_name)
    options = {
        "description": description,
        "meta": {
            "progress": 0,
            "kind": kind,
            "max_attempts": policy["max_retries"] + 1,
            "submitted_by": submitter or {},
            **(meta or {}),
        },
        "job_timeout": policy["timeout"],
        "retry": retry,
        "result_ttl": settings.TASK_RESULT_TTL,
        "failure_ttl": settings.TASK_RESULT_TTL,
    }
    # One round trip instead of RQ's two: the job and its place in the queue in one pipeline.
    with redis_outage_as_unavailable(), queue.connection.pipeline() as pipeline:
        if delay:
            job = queue.enqueue_in(timedelta(seconds=delay), func, *args, pipeline=pipeline, **options)
        else:
            job = queue.enqueue(func, *args, pipeline=pipeline, **options)
        pipeline.rpush(NEW_JOBS_KEY, job.id)
        pipeline.execute()
    logger.info("enqueued job_id=%s kind=%s queue=%s delay=%s", job.id, kind, queue_name, delay)
    send_status_changed(job, job.get_status(refresh=False).value, queue.connection, created=True)
    return job.id


# --- Thumbnails and confirmation emails ---------------------------------------------------------


def enqueue_thumbnails(image: thumbnails.CheckedImage, **options: Any) -> str:
    """Store a checked image and enqueue the job that makes its thumbnails; the job gets only its name.

    `options` are enqueue_call's: queue_name, delay, submitter.
    """
    stored_name = thumbnails.store_upload(image)
    try:
        return enqueue_call(
            tasks.make_thumbnails,
            (stored_name,),
            kind="thumbnail",
            description=f"Thumbnails of {stored_name}",
            meta={"upload": stored_name},
            **options,
        )
    except BaseException:
        thumbnails.discard(stored_name)  # no job will ever use (or clean up) the stored file
        raise


def enqueue_confirmation_email(address: str, **options: Any) -> str:
    """Enqueue the job that sends an address its confirmation link (options as for enqueue_call)."""
    return enqueue_call(
        tasks.send_confirmation_email,
        (address,),
        kind="confirmation_email",
        description=f"Confirmation email to {address}",
        **options,
    )


def confirm_email(token: str) -> tuple[str, str]:
    """Record the confirmation that a link carries; return the address and when it was confirmed.

    Raises emails.InvalidConfirmation or emails.ConfirmationExpired for links that cannot be used.
    """
    address = emails.read_token(token)
    with redis_outage_as_unavailable():
        return address, emails.record_confirmation(get_connection(), address)


def read_confirmation(token: str) -> tuple[str, str | None]:
    """The address a confirmation link is for, and when it was confirmed (None if not yet); records nothing.

    Raises what confirm_email raises for links that cannot be used.
    """
    address = emails.read_token(token)
    return address, email_confirmed_at(address)


def email_confirmed_at(address: str) -> str | None:
    """When an address was confirmed through its link, or None."""
    with redis_outage_as_unavailable():
        return emails.confirmed_at(get_connection(), address)


def take_new_job_ids(limit: int) -> list[str]:
    """Remove and return up to `limit` of the oldest ids in NEW_JOBS_KEY (one atomic LPOP)."""
    with redis_outage_as_unavailable():
        ids = get_connection().lpop(NEW_JOBS_KEY, limit) or []
    return [job_id.decode() for job_id in ids]


def give_back_new_job_ids(job_ids: list[str]) -> None:
    """Put ids taken by take_new_job_ids back, for the next batch, when their rows could not be written."""
    if job_ids:
        with redis_outage_as_unavailable():
            get_connection().lpush(NEW_JOBS_KEY, *reversed(job_ids))


def fetch_jobs(job_ids: list[str]) -> list[Job | None]:
    """Read many jobs in one round trip, in order; None for each job that is gone."""
    with redis_outage_as_unavailable():
        return Job.fetch_many(job_ids, connection=get_connection(), serializer=JSONSerializer)


def missing_jobs(job_ids: list[str]) -> list[str]:
    """The ids among these whose job is no longer in Redis (one round trip)."""
    if not job_ids:
        return []
    with redis_outage_as_unavailable(), get_connection().pipeline(transaction=False) as pipeline:
        for job_id in job_ids:
            pipeline.exists(Job.key_for(job_id))
        found = pipeline.execute()
    return [job_id for job_id, exists in zip(job_ids, found, strict=True) if not exists]


def fetch_job(task_id: str) -> Job:
    """Fetch one of our jobs, refusing ids that cannot be ours and payloads that are not JSON."""
    return job_from_hash(task_id, read_job_hash(task_id))


@contextmanager
def status_read(task_id: str) -> Iterator[None]:
    """Around a read of a job's status: a lost, hung or refusing Redis is QueueUnavailable (503).

    WRONGTYPE goes on to the caller: what it means depends on the key read.
    """
    try:
        with redis_outage_as_unavailable():
            yield
    except RedisResponseError as exc:
        if str(exc).startswith("WRONGTYPE"):
            raise
        # BUSY (a long script), MASTERDOWN, a refused permission: Redis cannot answer, the task may well exist.
        logger.error("reading job_id=%s: Redis refused: %s", task_id, exc)
        raise QueueUnavailable(str(exc)) from exc


def read_job_hash(task_id: str) -> dict[bytes, bytes]:
    """Read a job's hash in one round trip; refuse ids that cannot be ours and jobs that are gone."""
    if not TASK_ID_PATTERN.match(task_id):
        raise TaskNotFound(task_id)
    try:
        with status_read(task_id):
            stored = redis_reads.hgetall(get_connection(), Job.key_for(task_id))
    except RedisResponseError as exc:  # WRONGTYPE: something other than a job sits under its key
        logger.warning("job_id=%s is not a job's hash: %s", task_id, exc)
        raise TaskNotFound(task_id) from None
    if not stored:
        raise TaskNotFound(task_id)
    return stored


def job_from_hash(task_id: str, stored: dict[bytes, bytes]) -> Job:
    """Build RQ's Job from its hash (what Job.fetch does after its read), refusing non-JSON payloads."""
    job = Job(task_id, connection=get_connection(), serializer=JSONSerializer)
    try:
        job.restore(stored)
        job.func_name  # noqa: B018 - decodes the payload now, so a non-JSON job is refused here
    except NoSuchJobError:
        raise TaskNotFound(task_id) from None
    except DeserializationError:
        # Not written by this site as JSON: treat it as absent rather than trusting it.
        logger.warning("job_id=%s is not a JSON job; refusing to read it", task_id)
        raise TaskNotFound(task_id) from None
    return job


def get_task_status(task_id: str) -> TaskStatus:
    """Read a job's status, progress, result and error from Redis."""
    stored = read_job_hash(task_id)
    status = status_from_hash(task_id, stored)
    if status is not None:
        return status
    job = job_from_hash(task_id, stored)
    with redis_outage_as_unavailable():
        return status_of(job)


# Statuses whose answer is all in the job's hash: no result, error or scheduled time to look up.
HASH_ONLY_STATUSES = frozenset({"queued", "started", "deferred", "canceled"})
# Statuses whose answer is in the hash and the job's latest result (its return value, or why it failed).
RESULT_STATUSES = frozenset({"finished", "failed", "stopped"})


def status_from_hash(task_id: str, stored: dict[bytes, bytes]) -> TaskStatus | None:
    """Describe a job of ours from its hash (and its latest result once it ended); None when RQ must read it.

    Most status requests are polls of a job that waits or runs. RQ's Job.restore parses every
    field of the hash (five dates through strptime) to answer them: two thirds of the cost of
    GET /tasks/<id> beyond a bare view. This reads only the fields the answer shows, in RQ's
    storage format, and an ended job's latest result through RQ's own Result.restore
    (tests/test_views.py checks it against RQ's own reading for each status). Anything else (a
    scheduled job's time, a job we did not write as JSON) returns None and goes through RQ.
    """
    status = stored.get(b"status", b"").decode(errors="replace")
    if status not in HASH_ONLY_STATUSES and status not in RESULT_STATUSES:
        return None
    # Read as strictly as RQ does (its JSONSerializer, its one date format); whatever RQ would
    # read differently or refuse goes to RQ, so the answer is always the one RQ's reading gives.
    try:
        meta = JSONSerializer.loads(stored[b"meta"]) if stored.get(b"meta") else {}  # RQ leaves an empty meta out
        _function, _instance, _args, _kwargs = JSONSerializer.loads(zlib.decompress(stored[b"data"]))
        times = tuple(stored_time(stored.get(name)) for name in (b"enqueued_at", b"started_at", b"ended_at"))
        retries_left = int(stored[b"retries_left"]) if stored.get(b"retries_left") else None
        origin = stored.get(b"origin", b"").decode()
        # RQ writes whole seconds; it would also read "1h" and the like, which go to RQ from here.
        timeout = int(stored[b"timeout"]) if status in RESULT_STATUSES and stored.get(b"timeout") else None
    except (KeyError, ValueError, TypeError, zlib.error):
        return None
    if not isinstance(meta, dict):
        return None
    return_value = error = None
    if status in RESULT_STATUSES:
        result = latest_result(task_id)
        if status != JobStatus.FINISHED:
            error = failure_message(result, status, timeout)
        # As RQ's Job.return_value(), and only for a finished job: a job that succeeded once may
        # have run again and failed without a result of its own.
        elif result and result.type == Result.Type.SUCCESSFUL:
            return_value = result.return_value
    return describe(task_id, status, meta, retries_left, origin, times=times, result=return_value, error=error)


def latest_result(task_id: str) -> Result | None:
    """A job's latest result in RQ's results stream, read as RQ's Result.fetch_latest reads it."""
    connection = get_connection()
    try:
        with status_read(task_id):
            entry = redis_reads.latest_entry(connection, Result.get_key(task_id))
    except RedisResponseError as exc:  # WRONGTYPE: something other than RQ's results under their key
        logger.warning("job_id=%s has no readable results: %s", task_id, exc)
        return None
    if entry is None:
        return None
    result_id, payload = entry
    return Result.restore(task_id, result_id.decode(), payload, connection=connection, serializer=JSONSerializer)


# How RQ writes times (rq.utils.utcformat), and how RQ before 1.x did (no fraction of a second).
STORED_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z")


def stored_time(value: bytes | None) -> datetime | None:
    """Parse a time as RQ stores it (ISO 8601 in UTC with a Z suffix); empty means never."""
    if not value:
        return None
    if not STORED_TIME.fullmatch(value):
        raise ValueError(f"not a time RQ wrote: {value!r}")
    return datetime.fromisoformat(value.decode())


def status_of(job: Job, status: str | None = None) -> TaskStatus:
    """Describe a job as the API shows it. Pass `status` when it is already known."""
    if status is None:
        status = job.get_status(refresh=False).value
    scheduled_for = None
    if status == JobStatus.SCHEDULED:
        registry = ScheduledJobRegistry(job.origin, connection=job.connection, serializer=JSONSerializer)
        # The scheduler may have moved the job to its queue since its status was read.
        with contextlib.suppress(NoSuchJobError):
            scheduled_for = iso_utc(registry.get_scheduled_time(job.id))
    return describe(
        job.id,
        status,
        job.meta,
        job.retries_left,
        job.origin,
        times=(job.enqueued_at, job.started_at, job.ended_at),
        result=job.return_value() if status == JobStatus.FINISHED else None,
        error=failure_message(job.latest_result(), status, job.timeout)
        if status in {JobStatus.FAILED, JobStatus.STOPPED}
        else None,
        scheduled_for=scheduled_for,
    )


def describe(
    task_id: str,
    status: str,
    meta: dict[str, Any],
    retries_left: int | None,
    queue: str,
    times: tuple[datetime | None, datetime | None, datetime | None],
    result: Any = None,
    error: str | None = None,
    scheduled_for: str | None = None,
) -> TaskStatus:
    """The API's view of a job from what RQ stores: its meta, retries left and times (enqueued, started, ended)."""
    max_attempts = int(meta.get("max_attempts", 1))
    if retries_left is None:
        retries_left = max_attempts - 1
    enqueued_at, started_at, ended_at = times
    return TaskStatus(
        task_id=task_id,
        task_status=status,
        task_result=result,
        progress=100 if status == JobStatus.FINISHED else int(meta.get("progress", 0)),
        enqueued_at=iso_utc(enqueued_at),
        started_at=iso_utc(started_at),
        ended_at=iso_utc(ended_at),
        error=error,
        queue=queue,
        attempt=max(1, max_attempts - retries_left),
        max_attempts=max_attempts,
        scheduled_for=scheduled_for,
    )


def cancel_task(task_id: str) -> str:
    """Cancel a waiting job, or stop a running one; return the status it ends with.

    A queued, scheduled or deferred job becomes `canceled` at once. A started job is sent
    RQ's stop command: its worker kills the job and marks it `stopped`, which the caller
    sees shortly after. A job that has already ended raises TaskAlreadyEnded.
    """
    job = fetch_job(task_id)
    try:
        with redis_outage_as_unavailable():
            status = job.get_status(refresh=False).value
            if status in TERMINAL_STATUSES:
                raise TaskAlreadyEnded(task_id, status)
            if status == JobStatus.STARTED:
                send_stop_job_command(job.connection, job.id, serializer=JSONSerializer)
                logger.info("stop requested job_id=%s", job.id)
                return JobStatus.STOPPED.value
            # Taken off its queue first, in one step: if a worker popped it since the status was
            # read, it is starting, and canceling it would answer "canceled" for a job that runs.
            if status == JobStatus.QUEUED and not job.connection.lrem(
                Queue.redis_queue_namespace_prefix + job.origin, 0, job.id
            ):
                raise TaskStateConflict(f"Task {task_id} has just started; stop it instead.", JobStatus.STARTED.value)
            job.cancel()
            # A scheduled job also sits in the scheduled registry, which cancel() leaves alone.
            ScheduledJobRegistry(job.origin, connection=job.connection, serializer=JSONSerializer).remove(job)
    except InvalidJobOperation:
        raise TaskAlreadyEnded(task_id, JobStatus.CANCELED.value) from None
    logger.info("canceled job_id=%s", job.id)
    send_status_changed(job, JobStatus.CANCELED.value, job.connection)
    return JobStatus.CANCELED.value


def requeue_task(task_id: str) -> str:
    """Put a failed, stopped or canceled job back on its queue; return its new status."""
    job = fetch_job(task_id)
    try:
        with redis_outage_as_unavailable():
            status = job.get_status(refresh=False).value
            if status not in {"failed", "stopped", "canceled"}:
                message = f"Task {task_id} is {status}; only failed, stopped or canceled tasks can be requeued."
                raise TaskStateConflict(message, status)
            if (upload := thumbnails.upload_of(job)) and not thumbnails.upload_exists(upload):
                # Its image went with it when it ended (thumbnails.discard_files_of_unfinished_job).
                message = (
                    f"Task {task_id} cannot run again: its image was deleted when it ended {status}. Upload it again."
                )
                raise TaskStateConflict(message, status)
            job.meta["progress"] = 0
            job.save_meta()
            # rq's Job has no canceled_job_registry property (its Queue has): build the registry here.
            registry = (
                CanceledJobRegistry(job.origin, connection=job.connection, serializer=JSONSerializer)
                if status == "canceled"
                else job.failed_job_registry
            )
            registry.requeue(job)
    except InvalidJobOperation:
        raise TaskStateConflict(f"Task {task_id} is no longer in the {status} registry.", status) from None
    logger.info("requeued job_id=%s", job.id)
    send_status_changed(job, JobStatus.QUEUED.value, job.connection)
    return JobStatus.QUEUED.value


def failure_message(result: Result | None, status: str, timeout: int | None) -> str:
    """Say why a job failed or stopped, in one line: 'ValueError: boom', a timeout, a stop.

    From its latest result, its status and its time limit.
    """
    exc_string = (result.exc_string if result else None) or ""
    if "JobTimeoutException" in exc_string:
        return f"Timed out: the task ran longer than its limit of {timeout} seconds."
    if status == JobStatus.STOPPED:
        return "Stopped on request while running."
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
        # Maintenance notifications (Redis Enterprise moving connections during maintenance)
        # are off: with them, redis-py rewrites pooled connections, which the status read's
        # kept connections would miss (tasks_app/redis_reads.py); Redis and Sentinel send none.
        return Redis.from_url(
            config["URL"],
            retry=RedisRetry(NoBackoff(), 0),
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
        )
    sentinel = Sentinel(
        config["SENTINELS"],
        sentinel_kwargs={**config.get("SENTINEL_KWARGS", {}), "retry": RedisRetry(NoBackoff(), 0)},
        db=config.get("DB") or 0,
        password=config.get("PASSWORD"),
        socket_timeout=config.get("SOCKET_TIMEOUT"),
        **config.get("CONNECTION_KWARGS", {}),
    )
    return sentinel.master_for(config["MASTER_NAME"], retry=RedisRetry(NoBackoff(), 0))


def build_subscription_connection(config: dict[str, Any]) -> redis.asyncio.Redis:
    """Build the asyncio client of the event subscription for a RQ_QUEUES entry: its URL, or Sentinel.

    No read timeout: a subscription waits for messages as long as there are none, and the
    health checks find a dead connection instead.
    """
    if "SENTINELS" not in config:
        url = settings.REDIS_URL  # without the read timeout that RQ_QUEUES' URL carries
        return redis.asyncio.Redis.from_url(
            url, socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT, health_check_interval=10
        )
    sentinel = redis.asyncio.sentinel.Sentinel(
        config["SENTINELS"],
        sentinel_kwargs=config.get("SENTINEL_KWARGS", {}),
        db=config.get("DB") or 0,
        password=config.get("PASSWORD"),
        **{**config.get("CONNECTION_KWARGS", {}), "connection_class": FailoverFollowingAsyncConnection},
    )
    return sentinel.master_for(config["MASTER_NAME"], health_check_interval=10)


@dataclass(frozen=True)
class Health:
    queues: dict[str, int]  # jobs waiting, per queue
    workers: int  # workers whose heartbeat has not expired

    def as_dict(self) -> dict[str, Any]:
        return {"redis": "ok", **asdict(self)}


def check_health() -> Health:
    """Count waiting jobs per queue and live workers, in two round trips to Redis."""
    connection = get_connection()
    with redis_outage_as_unavailable():
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
    return Health(queues=dict(zip(settings.TASK_QUEUES, lengths, strict=True)), workers=alive)


def live_workers(hostname: str | None = None) -> list[Worker]:
    """Return the workers whose heartbeat has not expired, only those on `hostname` if given."""
    with redis_outage_as_unavailable():
        workers = Worker.all(connection=get_connection(), serializer=JSONSerializer)
    return [worker for worker in workers if hostname is None or worker.hostname == hostname]


# --- Admin operations (job history, issue 3) ----------------------------------------------------


def delete_task(task_id: str) -> str:
    """Remove a job that is not running from Redis (queue, registries, data); return its last status.

    A running job raises TaskStateConflict: stop it first. A job already gone raises TaskNotFound.
    """
    job = fetch_job(task_id)
    with redis_outage_as_unavailable():
        status = job.get_status(refresh=False).value
        if status == JobStatus.STARTED:
            raise TaskStateConflict(f"Task {task_id} is running; stop it before deleting it.", status)
        job.delete()
    if upload := thumbnails.upload_of(job):  # a deleted job's files have no one left to use or clean them
        thumbnails.discard(upload)
    logger.info("deleted job_id=%s (was %s)", task_id, status)
    return status


def cancel_waiting_task(task_id: str) -> str:
    """Cancel a queued, scheduled or deferred job; a running one raises TaskStateConflict (stop it)."""
    status = get_task_status(task_id).task_status
    if status == JobStatus.STARTED:
        raise TaskStateConflict(f"Task {task_id} is running; stop it instead of canceling it.", status)
    return cancel_task(task_id)


def stop_running_task(task_id: str) -> str:
    """Ask the worker to stop a running job; any other job raises TaskStateConflict."""
    status = get_task_status(task_id).task_status
    if status != JobStatus.STARTED:
        raise TaskStateConflict(f"Task {task_id} is {status}, not running; there is nothing to stop.", status)
    return cancel_task(task_id)
