"""A real redis-server for the whole session, emptied before each test, and real workers."""

from types import SimpleNamespace

import pytest
from redis import Redis

from taskqueue_site.settings import redis_url_with_timeouts
from tasks_app import connections
from tests.support.processes import child_env, manage_py, redis_server, stop


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as (port, _process):
        yield port


@pytest.fixture
def real_redis(redis_port, settings, monkeypatch):
    """Point the site at the session's redis-server, emptied."""
    url = f"redis://127.0.0.1:{redis_port}/0"
    queue_url = redis_url_with_timeouts(url, 0.5, 1.0)
    settings.REDIS_URL = url
    settings.RQ_QUEUES = {name: {**config, "URL": queue_url} for name, config in settings.RQ_QUEUES.items()}
    monkeypatch.setattr(connections, "_connections", {})
    monkeypatch.setattr(connections, "_queues", {})
    connection = Redis.from_url(url)
    connection.flushdb()
    yield SimpleNamespace(url=url, port=redis_port, connection=connection)
    connection.close()


@pytest.fixture
def start_worker(real_redis, tmp_path, django_db_setup, settings):
    """Start `manage.py rqworker high default low` processes; all are stopped after the test.

    They use the test database (tests.support.processes.child_env), where they write job history.
    """
    started = []

    def start(*extra_args: str, burst: bool = True, unit_seconds: float = 0.2, **env: str):
        args = ["rqworker", *settings.TASK_QUEUES, *extra_args]
        if burst:
            args.append("--burst")
        environment = child_env(REDIS_URL=real_redis.url, TASK_UNIT_SECONDS=str(unit_seconds), **env)
        process = manage_py(*args, env=environment, log_path=tmp_path / f"worker-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        stop(process)


@pytest.fixture
def start_scheduler(real_redis, tmp_path):
    """Start `manage.py runscheduler --name NAME` processes; all are stopped after the test."""
    started = []

    def start(name: str):
        environment = child_env(REDIS_URL=real_redis.url)
        log_path = tmp_path / f"scheduler-{len(started)}.log"
        process = manage_py("runscheduler", "--name", name, env=environment, log_path=log_path)
        started.append(process)
        return process

    yield start
    for process in started:
        stop(process)
