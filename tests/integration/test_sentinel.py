"""Redis Sentinel failover with real processes: jobs acknowledged before and after it all finish.

A primary, a replica and three sentinels, all with passwords (tests/support/sentinel.py); the
production web server (uvicorn) and a `manage.py rqworker --with-scheduler`, both configured with
REDIS_SENTINELS, REDIS_MASTER_NAME and the passwords instead of REDIS_URL. The primary is
SIGKILLed while jobs wait and one runs; the test measures how
long enqueueing failed and how many acknowledged jobs were lost, prints that, and writes it
to test-results/sentinel-failover.json.
"""

import asyncio
import contextlib
import json
import time

import pytest
from django_rq.connection_utils import get_redis_connection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ConstantBackoff
from redis.retry import Retry

from taskqueue_site.settings import sentinel_connection
from tasks_app.connections import build_subscription_connection
from tasks_app.redis_sentinel import FailoverFollowingConnection
from tests.support.http import read_events, request
from tests.support.processes import PROJECT_ROOT, manage_py, stop, wait_until
from tests.support.sentinel import MASTER_NAME, sentinel_deployment
from tests.support.webserver import production_env, uvicorn_server

pytestmark = pytest.mark.integration

REPORT_PATH = PROJECT_ROOT / "test-results" / "sentinel-failover.json"
QUEUES = ["high", "default", "low"]


def enqueue(base_url: str, task_type: int) -> tuple[int, str | None]:
    reply = request(f"{base_url}/tasks", "POST", {"type": task_type}, timeout=5)
    return reply.status, reply.body.get("data", {}).get("task_id") if reply.status == 202 else None


def test_jobs_acknowledged_before_and_after_the_primary_dies_all_finish(tmp_path, capsys):
    with sentinel_deployment(tmp_path) as redis:
        env = production_env(redis.site_env(TASK_UNIT_SECONDS="0.1", DJANGO_SECURE_SSL_REDIRECT="false"), tmp_path)
        worker = manage_py("rqworker", *QUEUES, "--with-scheduler", env=env, log_path=tmp_path / "worker.log")
        try:
            with uvicorn_server(env, tmp_path / "web.log") as base_url:
                acknowledged: list[str] = []

                # Before: the system works through Sentinel.
                for _ in range(5):
                    status, task_id = enqueue(base_url, 1)
                    assert status == 202
                    acknowledged.append(task_id)
                wait_until(lambda: all_finished(base_url, acknowledged), 30, "the first jobs to finish")

                # Pushed events come through Sentinel too (the subscription finds the master there).
                status, followed = enqueue(base_url, 2)
                assert status == 202
                acknowledged.append(followed)
                pushed = read_events(f"{base_url}/tasks/{followed}/events", timeout=20)
                assert pushed[-1][1]["task_status"] == "finished", pushed

                # A backlog that is still waiting, and one job running, when the primary dies.
                for _ in range(5):
                    status, task_id = enqueue(base_url, 2)
                    assert status == 202
                    acknowledged.append(task_id)
                killed_at = time.monotonic()
                redis.kill("primary")

                # During and after: keep enqueueing until ten in a row succeed after the failover.
                failed_at: list[float] = []
                recovered_at = None
                streak = 0
                deadline = killed_at + 30
                while streak < 10:
                    assert time.monotonic() < deadline, f"enqueue still failing after 30 s ({len(failed_at)} failures)"
                    status, task_id = enqueue(base_url, 1)
                    if status == 202:
                        acknowledged.append(task_id)
                        streak += 1
                        if failed_at and recovered_at is None:
                            recovered_at = time.monotonic()
                    else:
                        assert status == 503, status
                        failed_at.append(time.monotonic())
                        streak, recovered_at = 0, None
                    time.sleep(0.05)  # pacing the client, not waiting for a condition

                assert redis.master_port() == redis.replica_port  # the replica was promoted
                assert redis.processes["primary"].poll() is not None  # and the old primary stays dead

                finished = wait_until_settled(base_url, acknowledged, timeout=45)
                lost = [task_id for task_id in acknowledged if finished.get(task_id) != "finished"]
                report = {
                    "acknowledged_jobs": len(acknowledged),
                    "finished_jobs": len(acknowledged) - len(lost),
                    "lost_jobs": len(lost),
                    "lost_job_statuses": {task_id: finished.get(task_id) for task_id in lost},
                    "enqueue_failures": len(failed_at),
                    "enqueue_failed_for_seconds": round((recovered_at or killed_at) - killed_at, 2),
                    "first_failure_after_kill_seconds": round(failed_at[0] - killed_at, 2) if failed_at else None,
                    "worker_survived": worker.poll() is None,
                }
                REPORT_PATH.parent.mkdir(exist_ok=True)
                REPORT_PATH.write_text(json.dumps(report, indent=2) + "\n")
                with capsys.disabled():
                    print(f"\nSentinel failover: {json.dumps(report)}")

                assert failed_at, "enqueue never failed: the primary was not really gone"
                assert lost == [], report
                assert report["worker_survived"], "the worker quit instead of waiting for the new master"
        finally:
            stop(worker)


def test_a_client_retrying_through_a_failover_reaches_the_new_master(tmp_path):
    """The same connection, retried, asks the sentinels again (redis-py alone goes back to the dead primary).

    Both clients are built from the queues' settings, as the worker's and the event stream's are.
    """
    with sentinel_deployment(tmp_path) as redis:
        config = sentinel_connection(
            [("127.0.0.1", port) for port in redis.sentinel_ports],
            MASTER_NAME,
            password=redis.password,
            sentinel_password=redis.sentinel_password,
            connect_timeout=0.5,
            socket_timeout=1.0,
            connection_class=FailoverFollowingConnection,
        )
        retries = (ConstantBackoff(0.25), 80)  # 20 s: the failover takes 2 to 5
        pooled = get_redis_connection(config)
        pooled.set_retry(Retry(*retries))
        # One connection held throughout, as a worker holds its own in a blocking dequeue: taken
        # from the pool afresh, a connection would have been connected through the sentinels anyway.
        client = pooled.client()

        async def through_the_failover() -> None:
            subscriber = build_subscription_connection(config)
            subscriber.set_retry(AsyncRetry(*retries))
            client.set("before", "sync")
            await subscriber.set("before-async", "async")
            redis.kill("primary")
            client.set("after", "sync")  # each client has one connection, reconnected by its retries
            await subscriber.set("after-async", "async")
            await subscriber.aclose()

        asyncio.run(through_the_failover())

        assert redis.master_port() == redis.replica_port
        promoted = redis.client(redis.replica_port)
        assert promoted.mget("before", "after", "after-async") == [b"sync", b"sync", b"async"]


def all_finished(base_url: str, task_ids: list[str]) -> bool:
    return all(status == "finished" for status in statuses(base_url, task_ids).values())


def statuses(base_url: str, task_ids: list[str]) -> dict[str, str | None]:
    """Each job's status through the API; None when the site does not know the job."""
    result = {}
    for task_id in task_ids:
        reply = request(f"{base_url}/tasks/{task_id}", timeout=5)
        result[task_id] = reply.body["data"]["task_status"] if reply.status == 200 else None
    return result


def wait_until_settled(base_url: str, task_ids: list[str], timeout: float) -> dict[str, str | None]:
    """Wait until every job has finished, or until the deadline; return the last statuses seen."""
    seen: dict[str, str | None] = {}

    def settled() -> bool:
        seen.update(statuses(base_url, task_ids))
        return all(status == "finished" for status in seen.values())

    with contextlib.suppress(AssertionError):  # reported as lost jobs, with their statuses
        wait_until(settled, timeout, "every acknowledged job to finish", interval=0.5)
    return seen
