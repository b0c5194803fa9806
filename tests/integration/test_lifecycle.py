"""Cancel, stop, retries, timeouts, delays and priorities with a real Redis and real workers."""

import time
from datetime import UTC, datetime

import pytest

from tasks_app import jobs
from tests.support.http import create_task, request, task_status
from tests.support.processes import wait_until


def cancel(base_url: str, task_id: str):
    return request(f"{base_url}/tasks/{task_id}/cancel", "POST", X_Cancel_Token=jobs.cancel_token(task_id))


def status_becomes(base_url: str, task_id: str, wanted: str, timeout: float = 20) -> dict:
    return wait_until(
        lambda: (data := task_status(base_url, task_id))["task_status"] == wanted and data,
        timeout,
        f"task {task_id} to become {wanted}",
        interval=0.05,
    )


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def test_cancel_a_queued_task_and_it_never_runs(live_server, start_worker):
    task_id = create_task(live_server.url, 1)
    reply = cancel(live_server.url, task_id)
    assert reply.status == 200, reply.body
    assert reply.body["data"] == {"task_id": task_id, "task_status": "canceled", "stop_requested": False}

    assert start_worker().wait(timeout=30) == 0
    data = task_status(live_server.url, task_id)
    assert data["task_status"] == "canceled"
    assert data["started_at"] is None

    again = cancel(live_server.url, task_id)
    assert again.status == 409 and again.body["errors"] == {"task_status": ["canceled"]}


def test_cancel_a_scheduled_task(live_server, start_scheduler, start_worker):
    reply = request(f"{live_server.url}/tasks", "POST", {"type": 1, "delay": 2})
    task_id = reply.body["data"]["task_id"]
    assert task_status(live_server.url, task_id)["task_status"] == "scheduled"
    assert cancel(live_server.url, task_id).status == 200

    start_scheduler("tests")
    start_worker(burst=False)
    time.sleep(3.5)  # past the original start time: the scheduler must not have revived it
    data = task_status(live_server.url, task_id)
    assert data["task_status"] == "canceled" and data["started_at"] is None


def test_stop_a_running_task(live_server, start_worker):
    start_worker(burst=False, unit_seconds=20)
    task_id = create_task(live_server.url, 1)
    running = status_becomes(live_server.url, task_id, "started")
    assert running["progress"] < 100

    reply = cancel(live_server.url, task_id)
    assert reply.status == 202
    assert reply.body["data"]["stop_requested"] is True
    stopped = status_becomes(live_server.url, task_id, "stopped", timeout=10)
    assert stopped["error"] == "Stopped on request while running."
    assert cancel(live_server.url, task_id).status == 409


def test_cancel_a_finished_task_is_a_conflict(live_server, start_worker):
    task_id = create_task(live_server.url, 0)
    assert start_worker().wait(timeout=30) == 0
    reply = cancel(live_server.url, task_id)
    assert reply.status == 409
    assert reply.body["status"] == "error" and "already ended" in reply.body["message"]


def test_transient_failure_is_retried_then_finishes(live_server, real_redis, start_scheduler, start_worker, settings):
    settings.TASK_POLICIES = {"sleep": {"timeout": 30, "max_retries": 2, "retry_intervals": [1]}}
    task_id = jobs.enqueue_call("tests.support.jobs.flaky", ("test:flaky-runs", 1), kind="sleep", description="flaky")
    assert task_status(live_server.url, task_id)["attempt"] == 1

    start_scheduler("tests")
    start_worker(burst=False)
    final = status_becomes(live_server.url, task_id, "finished")
    assert final["task_result"] == "succeeded on run 2"
    assert (final["attempt"], final["max_attempts"]) == (2, 3)
    assert real_redis.connection.get("test:flaky-runs") == b"2"


def test_failure_beyond_the_policy_ends_failed(live_server, real_redis, start_worker, settings):
    settings.TASK_POLICIES = {"sleep": {"timeout": 30, "max_retries": 1, "retry_intervals": [0]}}
    task_id = jobs.enqueue_call("tests.support.jobs.flaky", ("test:hopeless", 5), kind="sleep", description="x")
    start_worker(burst=False)
    final = status_becomes(live_server.url, task_id, "failed")
    assert final["error"] == "ConnectionError: transient failure 2 of 5"
    assert (final["attempt"], final["max_attempts"]) == (2, 2)


def test_a_task_past_its_timeout_fails_with_a_clear_message(live_server, start_worker, settings):
    settings.TASK_POLICIES = {"sleep": {"timeout": 1, "max_retries": 0, "retry_intervals": []}}
    task_id = create_task(live_server.url, 1)
    start_worker(burst=False, unit_seconds=10)
    final = status_becomes(live_server.url, task_id, "failed", timeout=15)
    assert final["error"] == "Timed out: the task ran longer than its limit of 1 seconds."
    assert (parse(final["ended_at"]) - parse(final["started_at"])).total_seconds() < 5


def test_a_delayed_task_is_scheduled_then_runs_on_time(live_server, start_scheduler, start_worker):
    start_scheduler("tests")
    start_worker(burst=False)
    requested_at = datetime.now(UTC)
    reply = request(f"{live_server.url}/tasks", "POST", {"type": 0, "delay": 3})
    assert reply.status == 202
    task_id = reply.body["data"]["task_id"]
    scheduled = task_status(live_server.url, task_id)
    assert scheduled["task_status"] == "scheduled"
    due = parse(scheduled["scheduled_for"])
    assert 2 <= (due - requested_at).total_seconds() <= 4

    final = status_becomes(live_server.url, task_id, "finished", timeout=15)
    lateness = (parse(final["started_at"]) - due).total_seconds()
    print(f"\ndelayed task started {lateness * 1000:.0f} ms after its due time")
    # RQ's scheduler stores due times in whole seconds and looks once a second (then sleeps a
    # full second after its own pass): a due job waits up to that second and the pass's moment.
    assert -0.01 <= lateness < 1.1, f"started {lateness:.3f}s after its due time"


def test_high_priority_work_runs_before_low(live_server, start_worker):
    low = [request(f"{live_server.url}/tasks", "POST", {"type": 0, "queue": "low"}).body["data"]["task_id"]]
    low.append(create_task(live_server.url, 0))  # the default queue sits in the middle
    high = request(f"{live_server.url}/tasks", "POST", {"type": 0, "queue": "high"}).body["data"]["task_id"]

    assert start_worker().wait(timeout=30) == 0
    started = {task_id: task_status(live_server.url, task_id)["started_at"] for task_id in [*low, high]}
    assert started[high] < started[low[1]] < started[low[0]]
    assert task_status(live_server.url, high)["queue"] == "high"


@pytest.mark.parametrize(
    "payload",
    [{"type": 1, "delay": -1}, {"type": 1, "delay": "soon"}, {"type": 1, "queue": "urgent"}],
)
def test_new_inputs_are_validated_over_http(live_server, real_redis, payload):
    reply = request(f"{live_server.url}/tasks", "POST", payload)
    assert reply.status == 400
    assert reply.body["status"] == "error" and reply.body["errors"]
