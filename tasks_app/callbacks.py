"""RQ's job callbacks (jobs.CALLBACKS) and the tasks' start report, sent as signals.job_status_changed.

RQ calls a callback before it stores the outcome, so each describes the status the job is about to
have. Callbacks never raise: RQ would count it as the job failing, or stop its cleanup of abandoned jobs.
"""

import logging
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import connections
from django.utils import timezone
from rq.exceptions import AbandonedJobError
from rq.job import Job, JobStatus

from tasks_app import history
from tasks_app.signals import send_status_changed
from tasks_app.status import TaskStatus, describe, failure_message, iso_utc

logger = logging.getLogger(__name__)


def on_started(job: Job) -> None:
    """Called by a task as it starts (RQ has no start callback); records newly enqueued jobs first."""
    try:
        history.record_new_jobs()
    except Exception:
        logger.exception("job_id=%s: could not record new jobs in the history", job.id)
    report(job, lambda: describe(job, JobStatus.STARTED))


def on_success(job: Job, connection, result, *args, **kwargs) -> None:
    report(job, lambda: describe(job, JobStatus.FINISHED, result=result))


def on_failure(job: Job, connection, exc_type, exc_value, tb, *args, **kwargs) -> None:
    """A run failed: its exception, or RQ's cleanup found its worker dead (AbandonedJobError)."""
    if isinstance(exc_value, AbandonedJobError):
        exc_string = AbandonedJobError.__name__  # RQ passes the cleanup's own stack, not the job's
    else:
        exc_string = "".join(traceback.format_exception(exc_type, exc_value, tb))
    ended_with_failure(job, exc_string)


def on_stopped(job: Job, connection, *args, **kwargs) -> None:
    """A running job was stopped on request (runs in the worker, which killed the work horse)."""

    def stopped() -> TaskStatus:
        read_run(job)
        return describe(job, JobStatus.STOPPED, error=failure_message(job, JobStatus.STOPPED, None))

    report(job, stopped)


def on_work_horse_killed(job: Job, retpid: int, ret_val: int, rusage) -> None:
    """The process running a job died without a word (killed, out of memory): a worker option, not a job callback."""
    try:
        read_run(job)
        ended_with_failure(job, f"Work-horse terminated unexpectedly; waitpid returned {ret_val}")
    except Exception:  # RQ's worker would quit, leaving the job in its started registry
        logger.exception("job_id=%s: could not report its killed work horse", job.id)


def read_run(job: Job) -> None:
    """Load the run's start, worker and progress into the worker's copy of the job, which predates the
    run, keeping the end time RQ has just set on it for its own failure handling."""
    ended_at = job.ended_at
    job.refresh()
    job.ended_at = ended_at


def ended_with_failure(job: Job, exc_string: str) -> None:
    """Report a failed run: retried per the job's policy (as RQ is about to do), or failed."""
    error = failure_message(job, JobStatus.FAILED, exc_string)
    if not job.should_retry:
        report(job, lambda: describe(job, JobStatus.FAILED, error=error), traceback=exc_string)
        return
    # RQ keeps no result for a failure it retries; the history shows why the attempt failed.
    job.meta["last_error"] = error
    job.save_meta()
    interval = job.get_retry_interval()
    status = JobStatus.SCHEDULED if interval else JobStatus.QUEUED
    # RQ schedules the retry this long from now, once this callback returns (Job.retry).
    retry_at = timezone.now() + timedelta(seconds=interval)
    scheduled_for = iso_utc(retry_at) if interval else None
    report(
        job,
        lambda: describe(job, status, retries_left=job.retries_left - 1, scheduled_for=scheduled_for),
        retry_at=retry_at,
    )


def report(job: Job, task: Callable[[], TaskStatus], traceback: str = "", retry_at: datetime | None = None) -> None:
    """Send the status that `task` describes; log, never raise, and leave no database connection open."""
    try:
        send_status_changed(job, task(), traceback, retry_at)
    except Exception:
        logger.exception("job_id=%s: could not report its new status", job.id)
    finally:
        # The worker's forked work horses must not share a database connection; a test's in-process
        # worker runs inside the test's transaction, which must stay open.
        if not any(connection.in_atomic_block for connection in connections.all(initialized_only=True)):
            connections.close_all()
