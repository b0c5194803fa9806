"""Enqueue jobs under their policies, admit new work, and cancel, stop, requeue or delete jobs."""

import functools
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils.crypto import constant_time_compare
from redis.exceptions import WatchError
from rq import Callback, Queue, Retry
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer

from taskqueue_site.settings import parse_rate
from tasks_app import tasks, thumbnails
from tasks_app.connections import DEFAULT_QUEUE, get_connection, get_queue, redis_outage_as_unavailable
from tasks_app.history import NEW_JOBS_KEY
from tasks_app.signals import send_status_changed
from tasks_app.status import (
    REQUEUABLE_STATUSES,
    TASK_ID_PATTERN,
    TERMINAL_STATUSES,
    describe,
    fetch_job,
    is_json_job,
)

logger = logging.getLogger(__name__)

TASK_TYPES = (0, 1, 2, 3)
MAX_DELAY_SECONDS = 7 * 24 * 3600
REQUEUE_BATCH = 500  # jobs read from Redis in one round trip by requeue_tasks
# RQ calls these as each run of a job ends; the task itself reports its start.
CALLBACKS = {
    "on_success": Callback("tasks_app.callbacks.on_success"),
    "on_failure": Callback("tasks_app.callbacks.on_failure"),
    "on_stopped": Callback("tasks_app.callbacks.on_stopped"),
}


class RateLimited(Exception):
    """More new tasks than TASKS_RATE_LIMIT, or emails to one address than CONFIRMATION_EMAILS_PER_ADDRESS."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(f"{message} Retry in {retry_after} s.")
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


def admit_submission(client: str, queue_name: str = DEFAULT_QUEUE) -> None:
    """Refuse new work over the client's rate (a fixed window, in Redis) or into a queue at its depth limit."""
    limit = settings.TASKS_RATE_LIMIT
    connection = get_connection(queue_name)
    with redis_outage_as_unavailable():
        if wait := count_against_rate(connection, client, limit):
            raise RateLimited(f"Too many new tasks: the limit is {limit} per client.", wait)
        if settings.TASKS_MAX_QUEUE_DEPTH:  # refused early, before any work; enqueue_call admits atomically
            check_depth(get_queue(queue_name))


def check_depth(queue: Queue, admitting: int = 0) -> None:
    """Refuse new work into a queue at TASKS_MAX_QUEUE_DEPTH; delayed jobs count, as they land on it when due."""
    depth = queue.count + queue.scheduled_job_registry.get_job_count(cleanup=False) + admitting
    if depth >= settings.TASKS_MAX_QUEUE_DEPTH:
        raise QueueFull(queue.name, depth)


def reserve_place(queue: Queue) -> str:
    """Count a submission against the depth limit until its enqueue lands: WATCH makes concurrent ones take turns."""
    key = f"taskqueue:admitting:{queue.name}"
    with queue.connection.pipeline() as pipeline:
        while True:
            try:
                pipeline.watch(key)
                check_depth(queue, int(pipeline.get(key) or 0))
                pipeline.multi()
                pipeline.incr(key).expire(key, 60)  # a submission cut off by an outage
                pipeline.execute()
                return key
            except WatchError:
                continue


def count_against_rate(connection, name: str, limit: str) -> int:
    """Count one more event for `name` in the current window of a rate such as "3/h"; 0, or seconds to wait."""
    if (rate := parse_rate(limit)) is None:
        return 0
    allowed, window = rate
    now = time.time()
    key = f"taskqueue:rate:{name}:{int(now // window)}"
    with connection.pipeline() as pipeline:
        used, _ = pipeline.incr(key).expire(key, window + 1).execute()
    return max(1, math.ceil(window - now % window)) if used > allowed else 0


def enqueue_task(task_type: int, **options: Any) -> str:
    """Put a sleep task on a queue and return its job id (options as for enqueue_call)."""
    description = f"Sleep task, type {task_type}"
    meta = {"task_type": task_type}
    return enqueue_call(tasks.sleep_task, (task_type,), kind="sleep", description=description, meta=meta, **options)


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
    """Enqueue a job (checked by a form) under its kind's policy, after `delay` seconds; return its id."""
    policy = settings.TASK_POLICIES[kind]
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
        **CALLBACKS,
    }
    # One round trip: the job, its place in the queue and its id for the history (history.record_new_jobs).
    with redis_outage_as_unavailable(), queue.connection.pipeline() as pipeline:
        admitting = reserve_place(queue) if settings.TASKS_MAX_QUEUE_DEPTH else None
        if delay:
            job = queue.enqueue_in(timedelta(seconds=delay), func, *args, pipeline=pipeline, **options)
        else:
            job = queue.enqueue(func, *args, pipeline=pipeline, **options)
        if admitting:
            pipeline.decr(admitting)  # counted in its queue from now on
        pipeline.rpush(NEW_JOBS_KEY, job.id).execute()
    logger.info("enqueued job_id=%s kind=%s queue=%s delay=%s", job.id, kind, queue_name, delay)
    return job.id


def enqueue_thumbnails(image: thumbnails.CheckedImage, **options: Any) -> str:
    """Decode, store and enqueue an admitted image for thumbnails (options as for enqueue_call)."""
    thumbnails.check_decodes(image)
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
    limit = settings.CONFIRMATION_EMAILS_PER_ADDRESS
    with redis_outage_as_unavailable():
        wait = count_against_rate(get_connection(), f"recipient:{address.lower()}", limit)
    if wait:
        raise RateLimited(f"Too many confirmation emails to {address}: the limit is {limit} an address.", wait)
    description = f"Confirmation email to {address}"
    return enqueue_call(
        tasks.send_confirmation_email,
        (address,),
        kind="confirmation_email",
        description=description,
        meta={"email": address},
        **options,
    )


def cancel_token(task_id: str) -> str:
    """The proof of submission that lets its holder cancel or stop the task: only the 202 gives it."""
    return signing.Signer(salt="tasks_app.cancel").sign(task_id)


def holds_cancel_token(task_id: str, token: str) -> bool:
    return constant_time_compare(token, cancel_token(task_id))


def cancel_task(task_id: str, cancel: bool = True, stop: bool = True) -> str:
    """Cancel a waiting job, or ask the worker to stop a running one (unless refused); return its new status."""
    job = fetch_job(task_id)
    try:
        with redis_outage_as_unavailable():
            status = job.get_status(refresh=False).value
            if status == JobStatus.STARTED and not stop:
                raise TaskStateConflict(f"Task {task_id} is running; stop it instead of canceling it.", status)
            if status != JobStatus.STARTED and not cancel:
                raise TaskStateConflict(f"Task {task_id} is {status}, not running; there is nothing to stop.", status)
            if status in TERMINAL_STATUSES:
                raise TaskStateConflict(f"Task {task_id} has already ended ({status}).", status)
            if status == JobStatus.STARTED:
                send_stop_job_command(job.connection, job.id, serializer=JSONSerializer)
                logger.info("stop requested job_id=%s", job.id)
                return JobStatus.STOPPED.value
            # Taken off its queue first, in one step: if a worker popped it since the status was
            # read, it is starting, and canceling it would answer "canceled" for a job that runs.
            if status == JobStatus.QUEUED and not get_queue(job.origin).remove(job):
                raise TaskStateConflict(f"Task {task_id} has just started; stop it instead.", JobStatus.STARTED.value)
            job.cancel()  # also takes a scheduled job out of its registry
    except InvalidJobOperation:
        raise TaskStateConflict(f"Task {task_id} has already ended (canceled).", JobStatus.CANCELED.value) from None
    logger.info("canceled job_id=%s", job.id)
    send_status_changed(job, describe(job, JobStatus.CANCELED))
    return JobStatus.CANCELED.value


# The admin's actions: cancel only what waits, stop only what runs (others raise TaskStateConflict).
cancel_waiting_task = functools.partial(cancel_task, stop=False)
stop_running_task = functools.partial(cancel_task, cancel=False)


def requeue_task(task_id: str) -> str:
    return requeue_job(fetch_job(task_id))


def requeue_job(job: Job, check_only: bool = False) -> str:
    """Requeue a failed, stopped or canceled job that can run again (else TaskStateConflict); the one rule."""
    try:
        with redis_outage_as_unavailable():
            status = job.get_status(refresh=False).value
            if status not in REQUEUABLE_STATUSES:
                message = f"Task {job.id} is {status}; only failed, stopped or canceled tasks can be requeued."
                raise TaskStateConflict(message, status)
            if (upload := thumbnails.upload_of(job)) and not default_storage.exists(upload):
                # Its image went with it when it ended (thumbnails.discard_files_of_unfinished_job).
                message = (
                    f"Task {job.id} cannot run again: its image was deleted when it ended {status}. Upload it again."
                )
                raise TaskStateConflict(message, status)
            if check_only:
                return status
            job.meta["progress"] = 0
            job.save_meta()
            if status == JobStatus.CANCELED:
                registry = CanceledJobRegistry(job.origin, connection=job.connection, serializer=JSONSerializer)
            else:
                registry = job.failed_job_registry
            registry.requeue(job)
    except InvalidJobOperation:
        raise TaskStateConflict(f"Task {job.id} is no longer in the {status} registry.", status) from None
    logger.info("requeued job_id=%s", job.id)
    send_status_changed(job, describe(job, JobStatus.QUEUED))
    return JobStatus.QUEUED.value


@dataclass
class BulkRequeue:
    """What requeue_tasks did, or would do: the ids requeued, (id, reason) for each refused, the ids gone."""

    requeued: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def requeue_tasks(task_ids: list[str], check_only: bool = False) -> BulkRequeue:
    """Requeue many jobs under requeue_job's rule, reading them from Redis a batch at a time."""
    outcome = BulkRequeue()
    for start in range(0, len(task_ids), REQUEUE_BATCH):
        batch = task_ids[start : start + REQUEUE_BATCH]
        ours = [task_id for task_id in batch if TASK_ID_PATTERN.match(task_id)]
        outcome.missing += [task_id for task_id in batch if not TASK_ID_PATTERN.match(task_id)]
        with redis_outage_as_unavailable():
            fetched = Job.fetch_many(ours, connection=get_connection(), serializer=JSONSerializer)
        with transaction.atomic():  # the history rows of a batch in one commit
            for task_id, job in zip(ours, fetched, strict=True):
                if job is None or not is_json_job(job):
                    outcome.missing.append(task_id)
                    continue
                try:
                    requeue_job(job, check_only)
                    outcome.requeued.append(task_id)
                except TaskStateConflict as exc:
                    outcome.refused.append((task_id, str(exc)))
    return outcome


def run_scheduled_task(task_id: str) -> str:
    """Move a scheduled job (a delayed one, or a retry waiting for its time) to the front of its queue now."""
    job = fetch_job(task_id)
    with redis_outage_as_unavailable():
        status = job.get_status(refresh=False).value
        if status != JobStatus.SCHEDULED:
            raise TaskStateConflict(f"Task {task_id} is {status}; only a scheduled task can be run now.", status)
        registry = ScheduledJobRegistry(job.origin, connection=job.connection, serializer=JSONSerializer)
        try:
            registry.requeue(job, at_front=True)
        except InvalidJobOperation:  # the scheduler moved it to its queue since its status was read
            raise TaskStateConflict(f"Task {task_id} has just been queued by the scheduler.", "queued") from None
    logger.info("run now job_id=%s", job.id)
    send_status_changed(job, describe(job, JobStatus.QUEUED))
    return JobStatus.QUEUED.value


def delete_task(task_id: str) -> str:
    """Remove a job that is not running from Redis (queue, registries, data); return its last status."""
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
