"""The job history: rows written on enqueue and kept current by the status signal, against fakeredis."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from tasks_app import connections, history, jobs
from tasks_app.models import JobAttempt, JobRecord
from tasks_app.signals import send_status_changed
from tasks_app.status import describe
from tasks_app.templatetags.tasks_admin import duration
from tests.support import jobs as support_jobs
from tests.support.workers import InProcessJSONWorker

pytestmark = pytest.mark.django_db


def send(job: Job, status: str) -> None:
    """Send the status signal as the callbacks do, for a job as this copy of it says."""
    send_status_changed(job, describe(job, status))


def row(job_id: str) -> JobRecord:
    return JobRecord.objects.get(job_id=job_id)


def run_worker(connection) -> None:
    InProcessJSONWorker(["high", "default", "low"], connection=connection).work(burst=True)


def fetch(connection, job_id: str) -> Job:
    return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)


@pytest.fixture
def policy(settings):
    def set_policy(max_retries: int, intervals: list[int] | None = None) -> None:
        settings.TASK_POLICIES = {
            "sleep": {"timeout": 60, "max_retries": max_retries, "retry_intervals": intervals or [0]}
        }

    return set_policy


# --- Written in batches after enqueue, with who submitted it -------------------------------------


def test_api_enqueue_leaves_the_row_to_a_batch_that_records_it_queued_with_the_submitters_address(fake_redis):
    task_id = Client(REMOTE_ADDR="192.0.2.10").post("/tasks", {"type": 2}).json()["data"]["task_id"]
    assert not JobRecord.objects.filter(job_id=task_id).exists()  # no database write on the request
    assert history.record_new_jobs() == 1
    assert history.record_new_jobs() == 0  # each job once
    record = row(task_id)
    assert record.status == "queued"
    assert (record.queue, record.kind, record.task_type, record.function) == (
        "default",
        "sleep",
        2,
        "tasks_app.tasks.sleep_task",
    )
    assert (record.submitted_by, record.submitter_username, record.submitter_ip) == (None, "", "192.0.2.10")
    assert record.submitter == "anonymous (192.0.2.10)"
    assert record.enqueued_at is not None and record.started_at is None and record.ended_at is None
    assert (record.attempt, record.max_attempts) == (1, 3)  # the sleep policy retries twice


def test_a_signed_in_submitter_is_linked_to_the_row(fake_redis):
    user = User.objects.create_user("ada", password="x")
    client = Client()
    client.force_login(user)
    task_id = client.post("/tasks", {"type": 1}).json()["data"]["task_id"]
    history.record_new_jobs()
    record = row(task_id)
    assert (record.submitted_by, record.submitter_username, record.submitter_ip) == (user, "ada", "127.0.0.1")


def test_a_submitter_that_is_not_a_user_or_an_address_is_not_trusted(fake_redis):
    task_id = jobs.enqueue_task(1, submitter={"user_id": 99999, "username": "ghost", "ip": "not an ip"})
    history.record_new_jobs()
    record = row(task_id)
    assert (record.submitted_by, record.submitter_username, record.submitter_ip) == (None, "ghost", None)


def test_a_batch_records_jobs_as_they_are_now_and_skips_those_already_recorded_or_gone(fake_redis, monkeypatch):
    monkeypatch.setattr(history, "BATCH", 2)
    waiting, canceled, gone, *more = [jobs.enqueue_task(1) for _ in range(6)]
    delayed = jobs.enqueue_task(1, delay=60)
    jobs.cancel_task(canceled)  # its event wrote the row already
    fetch(fake_redis, gone).delete()

    assert history.record_new_jobs() == 5  # waiting, the three more and the delayed one, two at a time
    assert row(waiting).status == "queued" and row(delayed).status == "scheduled"
    assert [row(job_id).status for job_id in more] == ["queued"] * 3
    assert row(canceled).status == "canceled"
    assert not JobRecord.objects.filter(job_id=gone).exists()


def test_a_job_deleted_while_its_batch_is_written_is_marked_deleted(fake_redis, monkeypatch):
    task_id = jobs.enqueue_task(1)
    read_jobs = Job.fetch_many

    def read_then_lose_them(job_ids, **kwargs):
        jobs = read_jobs(job_ids, **kwargs)
        for job in filter(None, jobs):
            job.delete()  # an admin empties the queue now; its sync finds no row to mark yet
        return jobs

    monkeypatch.setattr(history.Job, "fetch_many", read_then_lose_them)
    history.record_new_jobs()
    assert row(task_id).status == "deleted"


def test_one_job_whose_row_cannot_be_built_does_not_hold_up_the_others(fake_redis, monkeypatch, caplog):
    odd, fine = jobs.enqueue_task(1), jobs.enqueue_task(2)
    build_fields = history.row_fields

    def fails_for_odd(job, *args, **kwargs):
        if job.id == odd:
            raise ValueError("unexpected meta")
        return build_fields(job, *args, **kwargs)

    monkeypatch.setattr(history, "row_fields", fails_for_odd)
    assert history.record_new_jobs() == 1
    assert row(fine).status == "queued" and not JobRecord.objects.filter(job_id=odd).exists()
    assert f"job_id={odd} could not be recorded" in caplog.text
    assert history.record_new_jobs() == 0  # not retried forever


def test_a_worker_keeps_working_when_recording_new_jobs_fails(fake_redis, settings, monkeypatch):
    settings.TASK_UNIT_SECONDS = 0.01
    task_id = jobs.enqueue_task(0)
    monkeypatch.setattr(history, "record_new_jobs", lambda: 1 / 0)
    run_worker(fake_redis)
    assert row(task_id).status == "finished"  # written by the job's own events


def test_rows_that_cannot_be_written_are_kept_for_the_next_batch(fake_redis, monkeypatch):
    task_id = jobs.enqueue_task(1)
    with monkeypatch.context() as patched:
        patched.setattr(JobRecord.objects, "bulk_create", lambda *args, **kwargs: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            history.record_new_jobs()
    assert not JobRecord.objects.filter(job_id=task_id).exists()
    assert history.record_new_jobs() == 1
    assert row(task_id).status == "queued"


def test_ids_that_cannot_be_given_back_are_named_in_the_log(fake_redis, monkeypatch, caplog):
    job_id = jobs.enqueue_task(1)

    def redis_gone(*args):
        raise connections.QueueUnavailable("Connection refused")

    def connection_refused(*args):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(history, "fetch_jobs", redis_gone)  # Redis went away after the LPOP...
    monkeypatch.setattr(connections.get_connection(), "lpush", connection_refused)  # ...and is still away
    with pytest.raises(connections.QueueUnavailable):
        history.record_new_jobs()
    assert f"1 new jobs left without a history row: {job_id}" in caplog.text


def test_a_worker_records_new_jobs_before_it_runs_them(fake_redis, settings):
    settings.TASK_UNIT_SECONDS = 0.01
    task_id = jobs.enqueue_task(0)
    recorded = []
    original = history.record_new_jobs
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(history, "record_new_jobs", lambda: recorded.append(original()) or recorded[-1])
        run_worker(fake_redis)
    assert recorded[0] == 1
    assert row(task_id).status == "finished"


# --- Kept current by the worker ------------------------------------------------------------------


def test_the_worker_brings_the_row_to_finished(fake_redis, settings):
    settings.TASK_UNIT_SECONDS = 0.05
    task_id = jobs.enqueue_task(1)
    run_worker(fake_redis)
    record = row(task_id)
    assert record.status == "finished"
    assert record.result == "true"
    assert record.worker_name
    assert record.enqueued_at <= record.started_at <= record.ended_at
    assert record.duration == record.ended_at - record.started_at


def attempts(job_id: str) -> list[tuple]:
    return list(
        JobAttempt.objects.filter(record_id=job_id).values_list("number", "outcome", "error", "retry_at", "worker_name")
    )


def test_each_attempt_of_a_retried_job_is_recorded_with_its_outcome(fake_redis, policy):
    policy(max_retries=1, intervals=[0])
    task_id = jobs.enqueue_call(support_jobs.flaky, ("runs", 1), kind="sleep", description="flaky")
    before = timezone.now()
    run_worker(fake_redis)
    assert row(task_id).status == "finished"
    [first, second] = JobAttempt.objects.filter(record_id=task_id)
    assert (first.number, first.outcome, first.error) == (1, "failed", "ConnectionError: transient failure 1 of 1")
    assert before <= first.retry_at <= second.started_at  # retried at once
    assert (second.number, second.outcome, second.error, second.retry_at) == (2, "finished", "", None)
    for attempt in (first, second):
        assert attempt.worker_name and attempt.enqueued_at <= attempt.started_at <= attempt.ended_at
    assert first.ended_at <= second.enqueued_at


def test_an_attempt_waiting_for_its_retry_says_when_it_is_due(fake_redis, policy):
    policy(max_retries=1, intervals=[60])
    task_id = jobs.enqueue_call(support_jobs.explode, ("flaky",), kind="sleep", description="explode")
    run_worker(fake_redis)
    [(number, outcome, error, retry_at, _)] = attempts(task_id)
    assert (number, outcome, error) == (1, "failed", "ValueError: flaky")
    scheduled = ScheduledJobRegistry("default", connection=fake_redis).get_scheduled_time(task_id)
    assert abs((retry_at - scheduled).total_seconds()) < 1  # RQ's own time for the retry


def test_a_late_start_event_does_not_reopen_an_ended_attempt(fake_redis, settings):
    settings.TASK_UNIT_SECONDS = 0.01
    task_id = jobs.enqueue_task(0)
    run_worker(fake_redis)
    job = fetch(fake_redis, task_id)
    send(job, "started")
    [(number, outcome, *_)] = attempts(task_id)
    assert (number, outcome) == (1, "finished")
    assert row(task_id).status == "finished"


def test_a_requeued_job_runs_again_as_a_new_attempt_and_waiting_writes_none(fake_redis, policy):
    policy(max_retries=0)
    task_id = jobs.enqueue_call(support_jobs.explode, ("boom",), kind="sleep", description="explode")
    run_worker(fake_redis)
    jobs.requeue_task(task_id)
    assert len(attempts(task_id)) == 1  # a queued job has not run again yet
    run_worker(fake_redis)
    assert [outcome for _, outcome, *_ in attempts(task_id)] == ["failed", "failed"]


def test_a_failure_is_recorded_with_its_message_and_traceback(fake_redis, policy):
    policy(max_retries=0)
    task_id = jobs.enqueue_call(support_jobs.explode, ("no space left",), kind="sleep", description="explode")
    run_worker(fake_redis)
    record = row(task_id)
    assert record.status == "failed"
    assert record.error == "ValueError: no space left"
    assert record.traceback.startswith("Traceback") and "raise ValueError(message)" in record.traceback


def test_a_retried_failure_keeps_the_attempts_error_while_it_waits(fake_redis, policy):
    policy(max_retries=1, intervals=[60])  # scheduled for a minute later: the burst worker leaves it
    task_id = jobs.enqueue_call(support_jobs.explode, ("flaky",), kind="sleep", description="explode")
    run_worker(fake_redis)
    record = row(task_id)
    assert record.status == "scheduled"
    assert (record.attempt, record.max_attempts) == (2, 2)
    assert record.error == "ValueError: flaky"
    assert record.started_at is None and record.ended_at is None and record.traceback == ""


def test_a_job_canceled_between_attempts_shows_no_run_time_of_the_old_attempt(fake_redis, policy):
    policy(max_retries=1, intervals=[60])
    task_id = jobs.enqueue_call(support_jobs.explode, ("flaky",), kind="sleep", description="explode")
    run_worker(fake_redis)  # attempt 1 fails; attempt 2 is scheduled
    before_cancel = timezone.now()
    jobs.cancel_task(task_id)
    record = row(task_id)
    assert record.status == "canceled"
    assert record.started_at is None and record.duration is None
    assert record.ended_at >= before_cancel


def test_cancel_and_requeue_are_recorded(fake_redis):
    task_id = jobs.enqueue_task(1)
    jobs.cancel_task(task_id)
    canceled = row(task_id)
    assert canceled.status == "canceled" and canceled.ended_at is not None
    jobs.requeue_task(task_id)
    requeued = row(task_id)
    assert requeued.status == "queued" and requeued.ended_at is None


# --- Out of order ---------------------------------------------------------------------------------


def test_late_events_never_overwrite_newer_ones(fake_redis, settings):
    settings.TASK_UNIT_SECONDS = 0.01
    task_id = jobs.enqueue_task(1)
    as_queued = fetch(fake_redis, task_id)
    with fake_redis.pipeline() as pipeline:
        as_started = fetch(fake_redis, task_id)
        as_started.prepare_for_execution("worker-1", pipeline)
        pipeline.execute()
    send(as_started, "started")
    send(as_queued, "queued")  # the web's event, written late
    assert row(task_id).status == "started"

    run_worker(fake_redis)
    assert row(task_id).status == "finished"
    send(as_started, "started")
    send(as_queued, "queued")
    assert row(task_id).status == "finished"


def test_a_worker_event_that_arrives_before_the_row_exists_creates_it(fake_redis):
    task_id = jobs.enqueue_task(1, submitter={"user_id": None, "username": "", "ip": "198.51.100.4"})
    as_queued = fetch(fake_redis, task_id)
    JobRecord.objects.all().delete()
    with fake_redis.pipeline() as pipeline:
        as_started = fetch(fake_redis, task_id)
        as_started.prepare_for_execution("worker-1", pipeline)
        pipeline.execute()
    send(as_started, "started")
    send(as_queued, "queued")
    record = row(task_id)
    assert (record.status, record.worker_name, record.submitter_ip) == ("started", "worker-1", "198.51.100.4")


def test_a_requeued_failure_is_a_new_run_that_may_go_back_to_queued(fake_redis, policy):
    policy(max_retries=0)
    task_id = jobs.enqueue_call(support_jobs.explode, ("once",), kind="sleep", description="explode")
    run_worker(fake_redis)
    failed_event = fetch(fake_redis, task_id)
    jobs.requeue_task(task_id)
    assert row(task_id).status == "queued"
    send(failed_event, "failed")  # the old run's event, replayed
    assert row(task_id).status == "queued"


# --- Changes made without the signal --------------------------------------------------------------


def test_sync_catches_up_with_changes_made_behind_the_signals_back(fake_redis, policy):
    policy(max_retries=0)
    failed_id = jobs.enqueue_call(support_jobs.explode, ("x",), kind="sleep", description="explode")
    run_worker(fake_redis)
    gone_id = jobs.enqueue_task(1)
    history.record_new_jobs()
    failed = fetch(fake_redis, failed_id)
    failed.failed_job_registry.requeue(failed)  # as django-rq's requeue button does
    fetch(fake_redis, gone_id).delete()  # as django-rq's delete button does

    history.sync_with_redis([failed_id, gone_id])
    assert row(failed_id).status == "queued"
    assert row(gone_id).status == "deleted"


def test_sync_goes_through_many_jobs_in_batches(fake_redis, monkeypatch):
    monkeypatch.setattr(history, "BATCH", 3)
    job_ids = [jobs.enqueue_task(1) for _ in range(7)]
    history.record_new_jobs()
    for job_id in job_ids[:5]:
        fetch(fake_redis, job_id).delete()  # an emptied queue
    history.sync_with_redis(job_ids)
    assert [row(job_id).status for job_id in job_ids] == ["deleted"] * 5 + ["queued"] * 2


def test_started_rows_left_behind_by_rqs_own_cleanup_are_caught_up(fake_redis):
    task_id = jobs.enqueue_task(1)
    job = fetch(fake_redis, task_id)
    with fake_redis.pipeline() as pipeline:
        job.prepare_for_execution("worker-1", pipeline)
        pipeline.execute()
    send(job, "started")
    job.set_status("failed")  # RQ's StartedJobRegistry.cleanup fails abandoned jobs silently
    JobRecord.objects.filter(job_id=task_id).update(updated_at=timezone.now() - timedelta(minutes=5))

    history.sync_stale_rows(timedelta(seconds=15))
    assert row(task_id).status == "failed"


def test_waiting_rows_of_jobs_gone_without_a_signal_are_marked_deleted(fake_redis):
    waiting = [jobs.enqueue_task(1), jobs.enqueue_task(1, delay=3600)]
    history.record_new_jobs()
    for job_id in waiting:
        fake_redis.delete(f"rq:job:{job_id}")  # lost with Redis's data, or emptied by hand
    still_waiting = jobs.enqueue_task(1)
    history.record_new_jobs()
    JobRecord.objects.update(updated_at=timezone.now() - timedelta(minutes=5))

    history.sync_stale_rows(timedelta(seconds=15))
    assert [row(job_id).status for job_id in waiting] == ["deleted", "deleted"]
    assert row(still_waiting).status == "queued"


# --- Pruning --------------------------------------------------------------------------------------


def make_row(job_id: str, status: str, age_days: float, ended: bool = True) -> JobRecord:
    moment = timezone.now() - timedelta(days=age_days)
    return JobRecord.objects.create(
        job_id=job_id, status=status, queue="default", created_at=moment, ended_at=moment if ended else None
    )


def test_prune_deletes_ended_jobs_older_than_the_retention(settings, capsys):
    settings.TASK_HISTORY_RETENTION_DAYS = 30
    old = make_row("old-finished", "finished", 31)
    JobAttempt.objects.create(record=old, number=1, enqueued_at=old.created_at, outcome="finished")
    make_row("old-failed", "failed", 45)
    make_row("old-canceled-without-end", "canceled", 40, ended=False)
    make_row("recent-finished", "finished", 29)
    make_row("old-but-still-queued", "queued", 60, ended=False)

    call_command("prune_job_history")
    assert "Deleted 3 job history rows older than 30 days." in capsys.readouterr().out
    assert set(JobRecord.objects.values_list("job_id", flat=True)) == {"recent-finished", "old-but-still-queued"}
    assert not JobAttempt.objects.exists()  # went with its job

    call_command("prune_job_history", "--days", "7")
    assert set(JobRecord.objects.values_list("job_id", flat=True)) == {"old-but-still-queued"}


def test_prune_deletes_a_long_history_in_batches(monkeypatch):
    monkeypatch.setattr(history, "PRUNE_BATCH", 2)
    for n in range(5):
        make_row(f"old-{n}", "finished", 40)
    make_row("recent", "finished", 1)
    with CaptureQueriesContext(connection) as queries:
        assert history.prune_history(30) == 5
    assert [job_id for job_id in JobRecord.objects.values_list("job_id", flat=True)] == ["recent"]
    assert len([query for query in queries if query["sql"].startswith('DELETE FROM "tasks_app_jobrecord"')]) == 3


def test_retention_comes_from_the_environment():
    from tests.test_settings import manage

    result = manage("shell", "-c", "from django.conf import settings; print(settings.TASK_HISTORY_RETENTION_DAYS)")
    assert result.stdout.strip().splitlines()[-1] == "30"
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.TASK_HISTORY_RETENTION_DAYS)",
        TASK_HISTORY_RETENTION_DAYS="7",
    )
    assert result.stdout.strip().splitlines()[-1] == "7"


# --- Readable durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0004, "0 ms"),
        (0.25, "250 ms"),
        (0.9996, "1.0 s"),
        (1.2, "1.2 s"),
        (9.96, "10 s"),
        (42.4, "42 s"),
        (60, "1 min"),
        (184, "3 min 4 s"),
        (3600, "1 h"),
        (2 * 3600 + 5 * 60 + 59, "2 h 5 min"),
        (3 * 86400 + 4 * 3600, "3 d 4 h"),
    ],
)
def test_durations_read_like_people_write_them(seconds, text):
    assert duration(timedelta(seconds=seconds)) == text
    assert duration(seconds) == text


def test_no_duration_is_blank():
    assert duration(None) == ""


def test_abandoned_job_detection_refuses_a_timeout_shorter_than_two_heartbeats():
    from tests.test_settings import manage

    result = manage("check", WORKER_HEARTBEAT_SECONDS="5", TASK_ABANDONED_AFTER_SECONDS="10")
    assert result.returncode != 0
    assert "TASK_ABANDONED_AFTER_SECONDS must exceed two heartbeats" in result.stderr
    assert manage("check", WORKER_HEARTBEAT_SECONDS="2", TASK_ABANDONED_AFTER_SECONDS="10").returncode == 0
