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


# Fixtures that start a server or a browser: tests using them belong to the slower layers.
SERVER_FIXTURES = {"redis_port", "real_redis", "start_worker", "live_server", "live_server_url"}
BROWSER_FIXTURES = {"browser", "page"}
# The history, admin and multi-worker tests, which `make test` runs on PostgreSQL too.
DATABASE_TEST_FILES = {
    "test_history.py",
    "test_admin_monitoring.py",
    "test_admin_permissions.py",
    "test_admin_timeline.py",
    "test_worker_pool.py",
    "test_admin.py",
}


def pytest_collection_modifyitems(config, items):
    """Mark each test with its layer: `-m "not integration and not browser"` needs no server at all."""
    for item in items:
        fixtures = set(item.fixturenames)
        layer = item.path.relative_to(config.rootpath / "tests").parts[0]
        if layer == "browser" or fixtures & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
        if layer in {"integration", "browser", "compose"} or fixtures & (SERVER_FIXTURES | BROWSER_FIXTURES):
            item.add_marker(pytest.mark.integration)
        if item.path.name in DATABASE_TEST_FILES:
            item.add_marker(pytest.mark.database)


@pytest.fixture(autouse=True)
def no_rate_limit(settings):
    """Tests send many tasks from one address; the rate limit has tests of its own."""
    settings.TASKS_RATE_LIMIT = "off"
    settings.CONFIRMATION_EMAILS_PER_ADDRESS = "off"


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


@pytest.fixture
def client():
    """Django's test client with CSRF checks on, as real clients meet them."""
    from django.test import Client

    return Client(enforce_csrf_checks=True)


@pytest.fixture
def viewer():
    """A signed-in staff client in the "Queue viewers" group."""
    from tasks_app.permissions import VIEWERS_GROUP
    from tests.support.accounts import staff

    return staff("viewer", VIEWERS_GROUP)


@pytest.fixture
def operator():
    """A signed-in staff client in the "Queue operators" group."""
    from tasks_app.permissions import OPERATORS_GROUP
    from tests.support.accounts import staff

    return staff("operator", OPERATORS_GROUP)
