"""Keep one JobRecord row per job current, whichever process changes the job.

The request that enqueues a job does not write its row (the database's writer lock would serialize
every POST /tasks): it pushes the id to NEW_JOBS_KEY, and `record_new_jobs` writes rows in batches.
Status events may arrive out of order, so each row keeps the order of the event that wrote it.
"""

import ipaddress
import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Max, Min, Model, Q
from django.utils import timezone
from django.utils.text import Truncator
from rq.exceptions import DeserializationError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from tasks_app.connections import QueueUnavailable, get_connection, redis_outage_as_unavailable
from tasks_app.models import JobAttempt, JobRecord
from tasks_app.signals import send_status_changed
from tasks_app.status import FAILURE_STATUSES, TERMINAL_STATUSES, WAITING_STATUSES, TaskStatus, describe_job

logger = logging.getLogger(__name__)

RESULT_MAX_CHARS = 500
# Jobs read or written at once; at most a few batches of new jobs a call keep a worker's pause short.
BATCH = 500
NEW_JOBS_MAX_BATCHES = 4
PRUNE_BATCH = 10_000
ENDED_STATUSES = frozenset(TERMINAL_STATUSES | {JobRecord.Status.DELETED})
# Statuses that end a run (canceled ends a job that waited, not a run).
ATTEMPT_ENDS = frozenset(FAILURE_STATUSES | {JobStatus.FINISHED})
# Ids of enqueued jobs whose row is not written yet.
NEW_JOBS_KEY = "taskqueue:history:new"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def record_status_change(
    sender: Any, job: Job, task: TaskStatus, traceback: str = "", retry_at: datetime | None = None, **kwargs: Any
) -> None:
    """Signal receiver: bring the job's history row, and the attempt the event is about, up to date."""
    if not save_row(job.id, row_fields(job, task, traceback), creation_fields(job, existing_users([job]))):
        logger.debug("job_id=%s ignored a late %s event", job.id, task.task_status)
    record_attempt(job, task, retry_at)


def record_attempt(job: Job, task: TaskStatus, retry_at: datetime | None) -> None:
    """Write the run a start or an end is about (one row per run); waiting and canceled runs have none."""
    if retry_at is not None:  # a failed run that RQ retries: the event already counts the next attempt
        number, outcome = task.attempt - 1, JobStatus.FAILED.value
    elif task.task_status == JobStatus.STARTED or task.task_status in ATTEMPT_ENDS:
        number, outcome = task.attempt, task.task_status
    else:
        return
    if job.enqueued_at is None:
        return
    ended = outcome != JobStatus.STARTED
    fields = {
        "number": number,
        "worker_name": job.worker_name or "",
        "started_at": job.started_at,
        "ended_at": end_of_run(job, job.started_at) if ended else None,
        "outcome": outcome,
        "error": (task.error or str((job.meta or {}).get("last_error", ""))) if outcome in FAILURE_STATUSES else "",
        "retry_at": retry_at,
        "event_order": event_order(job, outcome, number),
    }
    save_newest(JobAttempt, {"record_id": job.id, "enqueued_at": job.enqueued_at}, fields)


def record_new_jobs() -> int:
    """Write the rows of jobs enqueued since the last call, a few batches at most; return how many."""
    recorded = 0
    for _ in range(NEW_JOBS_MAX_BATCHES):
        with redis_outage_as_unavailable():
            job_ids = [job_id.decode() for job_id in get_connection().lpop(NEW_JOBS_KEY, BATCH) or []]
        if not job_ids:
            break
        try:
            recorded += insert_new_rows(job_ids)
        except Exception:
            try:
                with redis_outage_as_unavailable():
                    get_connection().lpush(NEW_JOBS_KEY, *reversed(job_ids))
            except QueueUnavailable:
                # Redis went away between the LPOP and now: say which jobs are without a row until
                # their next change writes it (a scheduled job may take long to change).
                logger.error("%d new jobs left without a history row: %s", len(job_ids), " ".join(job_ids))
            raise
        if len(job_ids) < BATCH:
            break
    return recorded


def insert_new_rows(job_ids: list[str]) -> int:
    """Insert the rows of jobs still in Redis that have none yet, as their status is now; return how many."""
    jobs = fetch_jobs(job_ids)
    existing = set(JobRecord.objects.filter(job_id__in=job_ids).values_list("job_id", flat=True))
    jobs = [job for job in jobs if job is not None and job.id not in existing]
    known_users = existing_users(jobs)
    rows = []
    for job in jobs:
        try:
            if job.get_status(refresh=False) is None:
                continue
            task = describe_job(job)
            rows.append(JobRecord(job_id=job.id, **row_fields(job, task), **creation_fields(job, known_users)))
        except Exception:  # one odd job must not hold up the batch; its next status change writes its row
            logger.exception("job_id=%s could not be recorded in the history", job.id)
    # A worker may create a row between the read above and this INSERT.
    JobRecord.objects.bulk_create(rows, ignore_conflicts=True)
    # A job deleted since it was read (an admin emptying its queue) found no row to mark then.
    mark_deleted(missing_jobs([row.job_id for row in rows]))
    return len(rows)


def fetch_jobs(job_ids: list[str]) -> list[Job | None]:
    """Read many jobs in one round trip; None for each job that is gone."""
    with redis_outage_as_unavailable():
        return Job.fetch_many(job_ids, connection=get_connection(), serializer=JSONSerializer)


def missing_jobs(job_ids: list[str]) -> list[str]:
    return [job_id for job_id, job in zip(job_ids, fetch_jobs(job_ids), strict=True) if job is None] if job_ids else []


def event_order(job: Job, status: str, attempt: int) -> int:
    """Order events by attempt, run (last enqueued) and stage: a late "queued" never undoes "started"."""
    micros = ((job.enqueued_at or job.created_at) - EPOCH) // timedelta(microseconds=1)
    stage = 1 if status in WAITING_STATUSES else 2 if status == JobStatus.STARTED else 3  # waiting, running, ended
    return attempt * 10**17 + micros * 10 + stage


def row_fields(job: Job, described: TaskStatus, traceback: str = "") -> dict[str, Any]:
    """What a row says about a job after this event; `traceback` is a failure's full text, if known."""
    status = described.task_status
    meta = job.meta or {}
    ran = status not in WAITING_STATUSES | {JobStatus.CANCELED}  # a canceled job never ran in this run
    started_at = job.started_at if ran else None
    ended_at = end_of_run(job, started_at) if status in TERMINAL_STATUSES else None
    task_type = meta.get("task_type")
    result = json.dumps(described.task_result, default=repr) if status == "finished" else ""
    return {
        "status": status,
        "queue": job.origin or "",
        "kind": str(meta.get("kind", ""))[:64],
        "task_type": task_type if isinstance(task_type, int) and 0 <= task_type < 2**15 else None,
        "function": function_name(job)[:255],
        "description": (job.description or "")[:255],
        "email": str(meta.get("email", ""))[:254].lower(),
        "created_at": job.created_at,
        "enqueued_at": job.enqueued_at,
        "started_at": started_at,
        "ended_at": ended_at,
        "duration": ended_at - started_at if ended_at and started_at else None,
        "attempt": described.attempt,
        "max_attempts": described.max_attempts,
        "result": Truncator(result).chars(RESULT_MAX_CHARS),
        "error": described.error or str(meta.get("last_error", "")),
        "traceback": (traceback or failure_traceback(job)) if status in FAILURE_STATUSES else "",
        "worker_name": job.worker_name or "",
        "event_order": event_order(job, status, described.attempt),
    }


def end_of_run(job: Job, started_at: datetime | None) -> datetime:
    """RQ's ended_at, or now where RQ sets none (cancel, stop, abandoned) or kept an earlier attempt's."""
    if job.ended_at is None or started_at is None or job.ended_at < started_at:
        return timezone.now()
    return job.ended_at


def submitter_of(job: Job) -> dict[str, Any]:
    submitter = (job.meta or {}).get("submitted_by")
    return submitter if isinstance(submitter, dict) else {}


def existing_users(jobs: list[Job]) -> set[int]:
    ids = [user_id for job in jobs if isinstance(user_id := submitter_of(job).get("user_id"), int)]
    return set(get_user_model().objects.filter(pk__in=ids).values_list("pk", flat=True))


def creation_fields(job: Job, known_users: set[int]) -> dict[str, Any]:
    """Who submitted the job (`known_users`: accounts that exist); written once, with the row."""
    submitter = submitter_of(job)
    user_id = submitter.get("user_id")
    return {
        "submitted_by_id": user_id if user_id in known_users else None,
        "submitter_username": str(submitter.get("username") or "")[:150],
        "submitter_ip": valid_ip(submitter.get("ip")),
    }


def save_row(job_id: str, fields: dict[str, Any], created: dict[str, Any]) -> bool:
    return save_newest(JobRecord, {"job_id": job_id}, {**fields, "updated_at": timezone.now()}, created)


def save_newest(model: type[Model], key: dict[str, Any], fields: dict[str, Any], created: dict | None = None) -> bool:
    """Upsert the row unless it holds a later event (compared inside the UPDATE); return whether it was written."""
    newer_or_same = model.objects.filter(**key, event_order__lte=fields["event_order"])
    if newer_or_same.update(**fields):
        return True
    if model.objects.filter(**key).exists():
        return False
    try:
        with transaction.atomic():
            model.objects.create(**key, **fields, **(created or {}))
        return True
    except IntegrityError:  # another process created it meanwhile
        return bool(newer_or_same.update(**fields))


def sync_with_redis(job_ids: Iterable[str]) -> None:
    """Announce changes made without a signal (django-rq's pages, RQ's cleanup); mark gone jobs deleted."""
    job_ids = list(dict.fromkeys(job_ids))
    # In batches: an emptied queue may have held many thousands of jobs.
    for start in range(0, len(job_ids), BATCH):
        batch = job_ids[start : start + BATCH]
        jobs = fetch_jobs(batch)
        rows = dict(JobRecord.objects.filter(job_id__in=batch).values_list("job_id", "status"))
        mark_deleted([job_id for job_id, job in zip(batch, jobs, strict=True) if job is None])
        for job in filter(None, jobs):
            status = job.get_status(refresh=False)
            if status and rows.get(job.id) != status.value:
                send_status_changed(job, describe_job(job))


def sync_stale_rows(older_than: timedelta) -> None:
    """Catch up rows unchanged for a while; waiting ones are checked for existence (one EXISTS each)."""
    stale = JobRecord.objects.filter(updated_at__lt=timezone.now() - older_than).order_by("updated_at")
    sync_with_redis(stale.filter(status=JobRecord.Status.STARTED).values_list("job_id", flat=True)[:BATCH])
    waiting = stale.filter(status__in=WAITING_STATUSES).values_list("job_id", flat=True)[:BATCH]
    mark_deleted(missing_jobs(list(waiting)))


def mark_deleted(job_ids: Iterable[str]) -> int:
    unfinished = JobRecord.objects.filter(job_id__in=list(job_ids)).exclude(status__in=ENDED_STATUSES)
    return unfinished.update(status=JobRecord.Status.DELETED, updated_at=timezone.now())


def prune_history(older_than_days: int) -> int:
    """Delete the rows of jobs that ended that long ago; return how many."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = JobRecord.objects.filter(Q(ended_at__lt=cutoff) | Q(ended_at__isnull=True, created_at__lt=cutoff))
    old = old.filter(status__in=ENDED_STATUSES)
    span = old.aggregate(first=Min("pk"), last=Max("pk"))
    deleted = 0
    # A window of ids at a time: one DELETE of a long history would hold SQLite's write lock longer
    # than workers wait for it to write their rows.
    for start in range(span["first"] or 0, (span["last"] or -1) + 1, PRUNE_BATCH):
        _, by_model = old.filter(pk__gte=start, pk__lt=start + PRUNE_BATCH).delete()  # their attempts go too
        deleted += by_model.get("tasks_app.JobRecord", 0)
    return deleted


def failure_traceback(job: Job) -> str:
    """The full exception text RQ kept for the job's last failed or stopped run."""
    result = job.latest_result()
    return (result.exc_string if result else None) or ""


def valid_ip(value: Any) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def function_name(job: Job) -> str:
    try:
        return job.func_name or ""
    except DeserializationError:
        return ""
