"""job_status_changed fires for every status change of a job enqueued here: in workers through RQ's callbacks."""

import pytest
from django.test import Client

from tasks_app import jobs
from tasks_app.signals import job_status_changed
from tests.support import jobs as support_jobs
from tests.support.workers import InProcessJSONWorker as JSONWorker


@pytest.fixture
def received():
    events = []

    def receiver(sender, job, status, **kwargs):
        events.append((job.id, status))

    job_status_changed.connect(receiver)
    yield events
    job_status_changed.disconnect(receiver)


def test_the_worker_sends_started_then_finished(fake_redis, received):
    task_id = Client().post("/tasks", {"type": 0}).json()["data"]["task_id"]
    assert received == []  # nobody can be watching a job whose id is not out yet
    JSONWorker(["default"], connection=fake_redis).work(burst=True)
    assert received == [(task_id, "started"), (task_id, "finished")]


def test_failure_is_sent_with_failed_status(fake_redis, received, settings):
    settings.TASK_POLICIES = {"sleep": {"timeout": 60, "max_retries": 0, "retry_intervals": [0]}}
    job_id = jobs.enqueue_call(support_jobs.explode, ("x",), kind="sleep", description="explode")
    JSONWorker(["default"], connection=fake_redis).work(burst=True)
    assert received == [(job_id, "started"), (job_id, "failed")]


def test_a_broken_receiver_does_not_break_the_job(fake_redis, received):
    def broken(**kwargs):
        raise RuntimeError("receiver bug")

    job_status_changed.connect(broken)
    try:
        response = Client().post("/tasks", {"type": 0})
        JSONWorker(["default"], connection=fake_redis).work(burst=True)
    finally:
        job_status_changed.disconnect(broken)
    assert response.status_code == 202
    assert [status for _, status in received] == ["started", "finished"]
