"""job_status_changed fires for every status change: in the web on enqueue, in workers after."""

import pytest
from django.test import Client
from rq.serializers import JSONSerializer

from tasks_app.signals import job_status_changed
from tasks_app.workers import InProcessJSONWorker as JSONWorker


@pytest.fixture
def received():
    events = []

    def receiver(sender, job, status, connection, **kwargs):
        events.append((job.id, status))

    job_status_changed.connect(receiver)
    yield events
    job_status_changed.disconnect(receiver)


def test_enqueue_then_worker_send_queued_started_finished(fake_redis, received):
    task_id = Client().post("/tasks", {"type": 0}).json()["data"]["task_id"]
    JSONWorker(["default"], connection=fake_redis).work(burst=True)
    assert received == [(task_id, "queued"), (task_id, "started"), (task_id, "finished")]


def test_failure_is_sent_with_failed_status(fake_redis, received):
    from rq import Queue

    job = Queue("default", connection=fake_redis, serializer=JSONSerializer).enqueue("tests.support.jobs.explode", "x")
    JSONWorker(["default"], connection=fake_redis).work(burst=True)
    assert received == [(job.id, "started"), (job.id, "failed")]


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
    assert [status for _, status in received] == ["queued", "started", "finished"]
