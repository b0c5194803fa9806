"""A job's status as the API shows it, read through RQ's Job, Result and registries."""

import contextlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import ResponseError as RedisResponseError
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

from tasks_app.connections import QueueUnavailable, get_connection, redis_outage_as_unavailable

logger = logging.getLogger(__name__)

# Pollers and streams stop at these.
TERMINAL_STATUSES = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED})
WAITING_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED})
REQUEUABLE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED})
# Ended by a failure or a stop: the job has an error to show.
FAILURE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.STOPPED})

# RQ makes ids with uuid4(): anything else is refused before it reaches Redis.
TASK_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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


@contextmanager
def status_read(task_id: str) -> Iterator[None]:
    """Around a read of a job: a lost, hung or refusing Redis is QueueUnavailable; WRONGTYPE goes on."""
    try:
        with redis_outage_as_unavailable():
            yield
    except RedisResponseError as exc:
        if str(exc).startswith("WRONGTYPE"):
            raise
        # BUSY (a long script), MASTERDOWN, a refused permission: Redis cannot answer, the task may well exist.
        logger.error("reading job_id=%s: Redis refused: %s", task_id, exc)
        raise QueueUnavailable(str(exc)) from exc


def fetch_job(task_id: str) -> Job:
    """Fetch one of our jobs, refusing ids that cannot be ours and payloads that are not JSON."""
    if not TASK_ID_PATTERN.match(task_id):
        raise TaskNotFound(task_id)
    try:
        with status_read(task_id):
            job = Job.fetch(task_id, connection=get_connection(), serializer=JSONSerializer)
    except NoSuchJobError:
        raise TaskNotFound(task_id) from None
    except RedisResponseError as exc:  # WRONGTYPE: something other than a job sits under its key
        logger.warning("job_id=%s is not a job: %s", task_id, exc)
        raise TaskNotFound(task_id) from None
    if not is_json_job(job):
        logger.warning("job_id=%s is not a JSON job; refusing to read it", task_id)
        raise TaskNotFound(task_id)
    if job.get_status(refresh=False) is None:  # not a hash RQ wrote
        raise TaskNotFound(task_id)
    return job


def is_json_job(job: Job) -> bool:
    """Whether a fetched job's payload reads as JSON: a job planted as pickle is not one of ours."""
    try:
        job.func_name  # noqa: B018 - decodes the payload
    except DeserializationError:
        return False
    return True


def get_task_status(task_id: str) -> TaskStatus:
    job = fetch_job(task_id)
    with status_read(task_id):
        return describe_job(job)


def describe_job(job: Job) -> TaskStatus:
    """Describe a fetched job as it is stored, reading its latest result once it has ended."""
    status = job.get_status(refresh=False).value
    result = None
    if status == JobStatus.FINISHED or status in FAILURE_STATUSES:
        try:
            with status_read(job.id):
                result = job.latest_result()
        except RedisResponseError as exc:  # WRONGTYPE: something other than RQ's results under their key
            logger.warning("job_id=%s has no readable results: %s", job.id, exc)
    return_value = error = scheduled_for = None
    if status == JobStatus.FINISHED:
        # As RQ's Job.return_value(): a job that succeeded once may have run again and failed.
        if result and result.type == Result.Type.SUCCESSFUL:
            return_value = result.return_value
    elif status in FAILURE_STATUSES:
        error = failure_message(job, status, result.exc_string if result else None)
    elif status == JobStatus.SCHEDULED:
        registry = ScheduledJobRegistry(job.origin, connection=job.connection, serializer=JSONSerializer)
        # The scheduler may have moved the job to its queue since its status was read.
        with contextlib.suppress(NoSuchJobError):
            scheduled_for = iso_utc(registry.get_scheduled_time(job.id))
    return describe(job, status, result=return_value, error=error, scheduled_for=scheduled_for)


def describe(
    job: Job,
    status: str,
    result: Any = None,
    error: str | None = None,
    scheduled_for: str | None = None,
    retries_left: int | None = None,
) -> TaskStatus:
    """The API's view of a job with this status; `retries_left` when a retry has not been stored yet."""
    meta = job.meta or {}
    max_attempts = int(meta.get("max_attempts", 1))
    if retries_left is None:
        retries_left = job.retries_left if job.retries_left is not None else max_attempts - 1
    return TaskStatus(
        task_id=job.id,
        task_status=JobStatus(status).value,
        task_result=result,
        progress=100 if status == JobStatus.FINISHED else int(meta.get("progress", 0)),
        enqueued_at=iso_utc(job.enqueued_at),
        started_at=iso_utc(job.started_at),
        ended_at=iso_utc(job.ended_at),
        error=error,
        queue=job.origin,
        attempt=max(1, max_attempts - retries_left),
        max_attempts=max_attempts,
        scheduled_for=scheduled_for,
    )


def failure_message(job: Job, status: str, exc_string: str | None) -> str:
    """Say why a job failed or stopped, in one line: 'ValueError: boom', a timeout, a stop, a dead worker."""
    exc_string = exc_string or ""
    if "JobTimeoutException" in exc_string:
        return f"Timed out: the task ran longer than its limit of {job.timeout} seconds."
    if status == JobStatus.STOPPED:
        return "Stopped on request while running."
    if "AbandonedJobError" in exc_string:
        return f"Worker died: {job.worker_name or 'its worker'} stopped sending heartbeats while running this job."
    if "Work-horse terminated unexpectedly" in exc_string:
        return "Worker died: the process running this job was killed."
    lines = [line for line in exc_string.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "The job failed without an error message."


def iso_utc(moment: datetime | None) -> str | None:
    return moment and moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
