"""Delay, queue and cancel inputs of the API, and the event stream's framing, against fakeredis."""

import asyncio
import json

import pytest
from django.contrib.auth.models import Permission
from django.test import AsyncClient, Client
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from tasks_app import connections, events, jobs, status
from tasks_app.events import StreamState
from tests.support.workers import InProcessJSONWorker
from tests.test_views import assert_error


def post(payload, **kwargs):
    return Client().post("/tasks", payload, content_type="application/json", **kwargs)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"type": 1, "delay": -5}, "delay"),
        ({"type": 1, "delay": 7 * 24 * 3600 + 1}, "delay"),
        ({"type": 1, "delay": 1.5}, "delay"),
        ({"type": 1, "delay": "later"}, "delay"),
        ({"type": 1, "delay": True}, "delay"),
        ({"type": 1, "delay": 10**40}, "delay"),
        ({"type": 1, "queue": "urgent"}, "queue"),
        ({"type": 1, "queue": 1}, "queue"),
        ({"type": 1, "queue": ["high"]}, "queue"),
    ],
)
def test_bad_delay_or_queue_is_a_400_naming_the_field(fake_redis, payload, field):
    assert_error(post(payload), 400, field=field)
    assert Queue("default", connection=fake_redis).count == 0


def test_delay_schedules_and_queue_picks_the_queue(fake_redis):
    task_id = post({"type": 2, "delay": 30, "queue": "low"}).json()["data"]["task_id"]
    data = Client().get(f"/tasks/{task_id}").json()["data"]
    assert data["task_status"] == "scheduled"
    assert data["queue"] == "low"
    assert data["scheduled_for"].endswith("Z")
    assert task_id in ScheduledJobRegistry("low", connection=fake_redis).get_job_ids()


def test_a_scheduled_job_moved_to_its_queue_while_being_read_is_reported_not_a_500(fake_redis):
    # The job's hash still says scheduled, but the scheduler has just taken it out of the registry.
    task_id = post({"type": 2, "delay": 30}).json()["data"]["task_id"]
    ScheduledJobRegistry("default", connection=fake_redis).remove(task_id)
    response = Client().get(f"/tasks/{task_id}")
    assert response.status_code == 200
    assert (response.json()["data"]["task_status"], response.json()["data"]["scheduled_for"]) == ("scheduled", None)


def test_form_fields_reach_the_queue(fake_redis):
    response = Client().post("/tasks", {"type": "1", "queue": "high", "delay": ""})
    task_id = response.json()["data"]["task_id"]
    assert Queue("high", connection=fake_redis).job_ids == [task_id]


def test_cancel_endpoint_answers(fake_redis):
    created = post({"type": 1}).json()["data"]
    task_id, token = created["task_id"], created["cancel_token"]
    client = Client(enforce_csrf_checks=True)
    assert client.get(f"/tasks/{task_id}/cancel").status_code == 405
    response = client.post(f"/tasks/{task_id}/cancel", headers={"X-Cancel-Token": token})
    assert response.status_code == 200
    assert response.json()["data"]["task_status"] == "canceled"
    assert Queue("default", connection=fake_redis).count == 0
    assert_error(client.post(f"/tasks/{task_id}/cancel", headers={"X-Cancel-Token": token}), 409, field="task_status")
    for unknown in ("unknown-task", "a" * 36):  # another task's token proves nothing
        assert_error(client.post(f"/tasks/{unknown}/cancel", headers={"X-Cancel-Token": token}), 403, field=None)
    assert_error(client.post("/tasks/..%2Fetc/cancel"), 404, field=None)


def test_cancel_and_stop_need_the_submitters_token(fake_redis, django_user_model):
    """Job ids are no secret (admin viewers see them all): knowing one gives no power over the job."""
    task_id = post({"type": 1}).json()["data"]["task_id"]
    other_token = post({"type": 1}).json()["data"]["cancel_token"]
    client = Client(enforce_csrf_checks=True)
    for headers in ({}, {"X-Cancel-Token": other_token}, {"X-Cancel-Token": task_id}, {"X-Cancel-Token": "x:y"}):
        body = assert_error(client.post(f"/tasks/{task_id}/cancel", headers=headers), 403, field=None)
        assert "submitter" in body["message"]
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(viewer)
    assert_error(client.post(f"/tasks/{task_id}/cancel"), 403, field=None)
    page = client.get(f"/jobs/{task_id}")
    assert "job_page_cancel" not in page.content.decode() and f"/jobs/{task_id}/cancel" not in page.content.decode()
    csrf = client.get("/").cookies["csrftoken"].value
    assert client.post(f"/jobs/{task_id}/cancel", {"csrfmiddlewaretoken": csrf}).status_code == 403
    assert client.get(f"/tasks/{task_id}").json()["data"]["task_status"] == "queued"  # reading stays open
    operator = django_user_model.objects.create_user("operator", password="pw", is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(codename__in=["cancel_job", "stop_job"]))
    client.force_login(operator)
    assert client.post(f"/jobs/{task_id}/cancel", {"csrfmiddlewaretoken": csrf}).status_code == 303
    assert client.get(f"/tasks/{task_id}").json()["data"]["task_status"] == "canceled"


def test_cancel_of_a_job_a_worker_just_took_is_a_conflict_not_a_false_canceled(fake_redis):
    """Between the status read and the cancel, a worker popped the job: it will run, so say so."""
    task_id = post({"type": 1}).json()["data"]["task_id"]
    fake_redis.lpop("rq:queue:default")  # what a worker's dequeue does; its status still reads queued
    response = Client().post(f"/tasks/{task_id}/cancel", headers={"X-Cancel-Token": jobs.cancel_token(task_id)})
    body = assert_error(response, 409, field="task_status")
    assert "has just started; stop it instead" in body["message"]
    assert Client().get(f"/tasks/{task_id}").json()["data"]["task_status"] == "queued"  # not marked canceled


def test_job_page_cancel_button(fake_redis):
    """Without JavaScript: the form posts, the job page keeps the token its Cancel button sends."""
    client = Client(enforce_csrf_checks=True)
    page = client.get("/")
    created = client.post("/", {"type": 1, "csrfmiddlewaretoken": page.cookies["csrftoken"].value})
    assert created.status_code == 303 and "?token=" in created["Location"]
    task_id = created["Location"].split("/")[2].split("?")[0]
    page = client.get(created["Location"])
    assert f'action="/jobs/{task_id}/cancel"' in page.content.decode()
    assert f'value="{jobs.cancel_token(task_id)}"' in page.content.decode()
    token = jobs.cancel_token(task_id)
    assert (
        client.post(f"/jobs/{task_id}/cancel", headers={"X-Cancel-Token": token}).status_code == 403
    )  # CSRF protected
    csrf = page.cookies["csrftoken"].value
    response = client.post(f"/jobs/{task_id}/cancel", {"csrfmiddlewaretoken": csrf, "cancel_token": token})
    assert response.status_code == 303
    assert 'id="job-status">canceled<' in client.get(response["Location"]).content.decode()


def stream(path: str, steps, timeout: float = 10) -> list[bytes]:
    """Open an event stream; after each frame read, run the next step (a callable or None); return all frames."""

    async def scenario() -> list[bytes]:
        response = await AsyncClient().get(path)
        assert response["Content-Type"] == "text/event-stream"
        frames, pending = [], list(steps)
        async for frame in response.streaming_content:
            frames.append(frame)
            if pending and (step := pending.pop(0)):
                step()
        return frames

    return asyncio.run(asyncio.wait_for(scenario(), timeout))  # a stream that never ends fails the test


def test_stream_of_an_ended_task_sends_one_event(fake_redis):
    task_id = post({"type": 0}).json()["data"]["task_id"]
    InProcessJSONWorker(["default"], connection=fake_redis).work(burst=True)
    body = b"".join(stream(f"/tasks/{task_id}/events", [])).decode()
    assert body.startswith("retry: 3000\n\n")
    frames = [frame for frame in body.split("\n\n") if frame.startswith("event:")]
    assert len(frames) == 1
    name, data = frames[0].split("\n")
    assert name == "event: status"
    assert json.loads(data.removeprefix("data: "))["task_status"] == "finished"


def test_a_stream_ends_on_a_change_that_published_nothing(fake_redis, monkeypatch):
    """A job deleted without an event (django-rq's pages, RQ's cleanup) ends the stream at the next keepalive."""
    monkeypatch.setattr(events, "KEEPALIVE_SECONDS", 0.1)
    task_id = post({"type": 1}).json()["data"]["task_id"]
    frames = stream(f"/tasks/{task_id}/events", [None, lambda: Job.fetch(task_id, connection=fake_redis).delete()])
    assert frames[0] == b"retry: 3000\n\n"
    assert b'"task_status": "queued"' in frames[1]
    assert frames[-1] == b'event: missing\ndata: {"task_id": "%s"}\n\n' % task_id.encode()


def test_a_stream_ends_cleanly_when_redis_goes_away(fake_redis, monkeypatch):
    monkeypatch.setattr(events, "KEEPALIVE_SECONDS", 0.1)
    task_id = post({"type": 1}).json()["data"]["task_id"]

    def unavailable(task_id):
        raise connections.QueueUnavailable("connection refused")

    frames = stream(
        f"/tasks/{task_id}/events", [None, lambda: monkeypatch.setattr(status, "get_task_status", unavailable)]
    )
    assert frames[-1] == events.KEEPALIVE  # ended, no exception: the browser reconnects


def test_a_stream_registers_its_tasks_only_once_it_runs():
    """A client gone before the stream's body starts leaves nothing registered in the process's hub."""

    async def scenario():
        hub = events.hub()
        body = events.stream_async(["a"], lambda task_id: None, lambda status: False)
        assert hub.listeners == {}  # made, never started: nothing to clean up
        assert await body.__anext__() == events.PREAMBLE
        assert set(hub.listeners) == {"a"}
        await body.aclose()
        assert hub.listeners == {}

    asyncio.run(scenario())


def test_multi_stream_needs_ids(fake_redis):
    assert_error(Client().get("/tasks/events"), 400, field="id")
    query = "&".join(f"id=t{number}" for number in range(51))
    assert_error(Client().get(f"/tasks/events?{query}"), 400, field="id")


def test_stream_state_skips_repeats_and_ends_on_terminal():
    state = StreamState(["a", "b"], lambda status: status in {"finished", "failed"})
    running = {"task_id": "a", "task_status": "started", "progress": 10, "attempt": 1}
    assert state.frame(running).startswith(b"event: status\ndata: ")
    assert state.frame(running) is None  # the same again is not sent
    assert state.frame({**running, "progress": 20}) is not None
    assert state.frame({"task_id": "other", "task_status": "finished"}) is None
    assert state.frame({**running, "task_status": "finished", "progress": 100}) is not None
    assert state.pending == {"b"}
    assert state.initial_frame("b", None) == b'event: missing\ndata: {"task_id": "b"}\n\n'
    assert not state.pending


def test_pickled_job_cannot_be_canceled_either(fake_redis):
    job = Queue("default", connection=fake_redis).enqueue("tasks_app.tasks.sleep_task", 1)
    assert_error(
        Client().post(f"/tasks/{job.id}/cancel", headers={"X-Cancel-Token": jobs.cancel_token(job.id)}), 404, field=None
    )
    assert Queue("default", connection=fake_redis, serializer=JSONSerializer).count == 1
