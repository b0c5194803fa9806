import fakeredis
import fakeredis.aioredis
import pytest

from tasks_app import connections


def pytest_addoption(parser):
    parser.addoption("--compose", action="store_true", help="also run tests/compose: podman builds and runs the stack")


def pytest_ignore_collect(collection_path, config):
    """The compose stack takes minutes and podman: only `make test-compose` (--compose) runs it."""
    if collection_path.name == "compose" and not config.getoption("--compose"):
        return True
    return None


@pytest.fixture(autouse=True)
def no_rate_limit(settings):
    """Tests send many tasks from one address; the rate limit has tests of its own."""
    settings.TASKS_RATE_LIMIT = "off"


@pytest.fixture
def fake_redis(monkeypatch):
    """Route every Redis client of the site to an in-memory fakeredis server."""
    server = fakeredis.FakeServer()
    connection = fakeredis.FakeRedis(server=server)
    monkeypatch.setattr(connections, "build_connection", lambda config: connection)
    subscription = lambda config: fakeredis.aioredis.FakeRedis(server=server)  # noqa: E731
    monkeypatch.setattr(connections, "build_subscription_connection", subscription)
    monkeypatch.setattr(connections, "_connections", {})
    monkeypatch.setattr(connections, "_queues", {})
    return connection


@pytest.fixture
def down_redis(settings, monkeypatch):
    """Point the queues at a loopback port where nothing listens."""
    from tests.support.processes import free_port

    url = f"redis://127.0.0.1:{free_port()}/0?socket_connect_timeout=0.5&socket_timeout=1"
    settings.RQ_QUEUES = {name: {**config, "URL": url} for name, config in settings.RQ_QUEUES.items()}
    monkeypatch.setattr(connections, "_connections", {})
    monkeypatch.setattr(connections, "_queues", {})
    return url


@pytest.fixture(autouse=True)
def no_redis_unless_asked(down_redis):
    """No test reaches a Redis server it did not start, such as a developer's own on port 6379.

    Unless a test asks for fake_redis or real_redis (which override this), the queues point at a
    loopback port where nothing listens.
    """


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """Keep a SQLite test database in a file, not in memory, so that workers the tests start share it.

    With --postgres (tests/support/postgres.py) the tests use a private PostgreSQL cluster instead.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("database") / "test.sqlite3")
