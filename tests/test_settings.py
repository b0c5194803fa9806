"""Settings come from the environment, and unsafe production settings refuse to start."""

import json
import re
import subprocess
import sys

import pytest

from taskqueue_site.settings import redis_url_with_timeouts
from tests.support.processes import PROJECT_ROOT, child_env


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_debug_off_without_a_secret_key_refuses_to_start():
    result = manage("check", DJANGO_DEBUG="false", DJANGO_SECRET_KEY="", DJANGO_ALLOWED_HOSTS="example.com")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_debug_off_without_allowed_hosts_refuses_to_start():
    result = manage("check", DJANGO_DEBUG="false", DJANGO_SECRET_KEY="x" * 50, DJANGO_ALLOWED_HOSTS="")
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS must be set" in result.stderr


def test_a_bad_boolean_is_reported_by_name():
    result = manage("check", DJANGO_DEBUG="maybe")
    assert result.returncode != 0
    assert 'Environment variable "DJANGO_DEBUG" invalid' in result.stderr
    assert "Not a valid boolean" in result.stderr


def test_settings_read_the_environment():
    code = (
        "from django.conf import settings as s;"
        "print(s.RQ_QUEUES['default']['URL'], s.TASK_UNIT_SECONDS, s.DATABASES['default']['NAME'], s.DEBUG)"
    )
    result = manage(
        "shell",
        "-c",
        code,
        REDIS_URL="redis://:secret@10.0.0.5:6380/3",
        TASK_UNIT_SECONDS="0.25",
        DATABASE_URL="sqlite:////tmp/other.sqlite3",
        DJANGO_DEBUG="true",
    )
    assert result.returncode == 0, result.stderr
    url, unit, database, debug = result.stdout.strip().splitlines()[-1].split()
    assert url.startswith("redis://:secret@10.0.0.5:6380/3?")
    assert "socket_timeout=" in url and "socket_connect_timeout=" in url
    assert (unit, database, debug) == ("0.25", "/tmp/other.sqlite3", "True")


def test_every_queue_uses_the_json_serializer(settings):
    assert settings.RQ_QUEUES
    for config in settings.RQ_QUEUES.values():
        assert config["SERIALIZER"] == "rq.serializers.JSONSerializer"
    assert settings.RQ["WORKER_CLASS"] == "tasks_app.workers.JSONWorker"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:1/0", "redis://h:1/0?socket_connect_timeout=0.5&socket_timeout=1.0"),
        ("rediss://h:1/0?socket_timeout=5", "rediss://h:1/0?socket_timeout=5&socket_connect_timeout=0.5"),
    ],
)
def test_timeouts_are_added_to_the_redis_url_unless_given(url, expected):
    assert redis_url_with_timeouts(url, 0.5, 1.0) == expected


def test_an_unknown_redis_scheme_is_refused():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured):
        redis_url_with_timeouts("http://h:1/0", 0.5, 1.0)


# --- Redis Sentinel -----------------------------------------------------------------------------


def test_sentinel_settings_replace_the_url_for_every_queue():
    code = (
        "from django.conf import settings as s; import json;"
        "print(isinstance(s.RQ_QUEUES['default']['CONNECTION_KWARGS']['connection_class'], type));"
        "print(json.dumps(s.RQ_QUEUES, default=lambda o: f'{o.__module__}.{o.__qualname__}'))"
    )
    result = manage(
        "shell",
        "-c",
        code,
        REDIS_URL="redis://ignored:6379/0",
        REDIS_SENTINELS="10.0.0.1:26379, sentinel-2.internal:26380,[::1]:26381",
        REDIS_MASTER_NAME="taskqueue",
        REDIS_DB="2",
        REDIS_PASSWORD="redis-secret",
        REDIS_SENTINEL_PASSWORD="sentinel-secret",
    )
    assert result.returncode == 0, result.stderr
    imported, dumped = result.stdout.strip().splitlines()[-2:]
    assert imported == "True"  # the class itself by the time redis-py sees it, not its path
    queues = json.loads(dumped)
    assert set(queues) == {"high", "default", "low"}
    for config in queues.values():
        assert "URL" not in config
        assert config["SENTINELS"] == [["10.0.0.1", 26379], ["sentinel-2.internal", 26380], ["::1", 26381]]
        assert config["MASTER_NAME"] == "taskqueue"
        assert (config["DB"], config["PASSWORD"]) == (2, "redis-secret")
        assert config["SENTINEL_KWARGS"]["password"] == "sentinel-secret"
        assert config["SOCKET_TIMEOUT"] == 1.0
        assert config["CONNECTION_KWARGS"] == {
            "socket_connect_timeout": 0.5,
            "connection_class": "tasks_app.redis_sentinel.FailoverFollowingConnection",
        }
        assert config["SERIALIZER"] == "rq.serializers.JSONSerializer"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_SENTINELS": "10.0.0.1:26379"}, "REDIS_SENTINELS and REDIS_MASTER_NAME must be set together"),
        ({"REDIS_MASTER_NAME": "taskqueue"}, "REDIS_SENTINELS and REDIS_MASTER_NAME must be set together"),
        ({"REDIS_SENTINELS": "10.0.0.1", "REDIS_MASTER_NAME": "m"}, "'10.0.0.1' is not host:port"),
        ({"REDIS_SENTINELS": "h:99999", "REDIS_MASTER_NAME": "m"}, "'h:99999' is not host:port"),
        ({"DJANGO_LOG_FORMAT": "xml"}, "Must be one of: json, plain."),
        ({"TASK_ABANDONED_AFTER_SECONDS": "nan"}, "Special numeric values (nan or infinity) are not permitted."),
        ({"REDIS_SOCKET_TIMEOUT": "inf"}, "Special numeric values (nan or infinity) are not permitted."),
        ({"TASKS_MAX_QUEUE_DEPTH": "0.9"}, "Not a valid integer."),
        ({"TASKS_MAX_QUEUE_DEPTH": "-1"}, "Must be greater than or equal to 0."),
        ({"TASK_POLICIES": '{"sleep": {"timeout": 0}}'}, "'timeout': ['Must be greater than or equal to 1.']"),
        ({"TASK_POLICIES": '{"nap": {"timeout": 5}}'}, "'nap': ['Unknown field.']"),
        ({"DJANGO_STORAGE_OPTIONS": "[1]"}, "Must be a JSON object."),
        ({"SITE_URL": "ftp://example.com"}, "Not a valid URL."),
        ({"THUMBNAIL_SIZES": "128,8000"}, "THUMBNAIL_SIZES must list whole numbers from 16 to 4096"),
    ],
)
def test_half_or_malformed_settings_refuse_to_start(env, message):
    result = manage("check", **env)
    assert result.returncode != 0
    assert message in result.stderr
    if " must " not in message:  # read by environs, whose errors name the variable
        assert f'Environment variable "{next(iter(env))}" invalid:' in result.stderr


# --- Every setting is documented -----------------------------------------------------------------

# env.int("X", ...), names("X", ...), os.environ.get("X") in the code; ${X} in compose.yml.
READ_FROM_CODE = re.compile(r"""(?:environ\.get|env(?:\.\w+)?|names)\(\s*["']([A-Z][A-Z0-9_]+)["']""")
READ_BY_COMPOSE = re.compile(r"\$\{([A-Z][A-Z0-9_]+)")
# Read by uvicorn itself (documented flags and variables of the production server).
READ_BY_UVICORN = {"FORWARDED_ALLOW_IPS"}
# Read by `make run` (the Makefile and the Procfile).
READ_BY_MAKE_RUN = {"HOST", "PORT", "REDIS_PORT", "WORKERS"}


def settings_the_project_reads() -> set[str]:
    names = READ_BY_UVICORN | READ_BY_MAKE_RUN
    for path in [*PROJECT_ROOT.glob("taskqueue_site/*.py"), *PROJECT_ROOT.glob("tasks_app/**/*.py")]:
        names |= set(READ_FROM_CODE.findall(path.read_text()))
    names |= set(READ_BY_COMPOSE.findall((PROJECT_ROOT / "compose.yml").read_text()))
    return names - {"DJANGO_SETTINGS_MODULE"}


def test_every_setting_is_in_env_example():
    # .env.example is the one list of settings; docs/configuration.md points at it.
    names = settings_the_project_reads()
    assert {"REDIS_URL", "REDIS_SENTINELS", "DJANGO_SECRET_KEY", "WEB_CONCURRENCY", "WORKERS"} <= names
    example = (PROJECT_ROOT / ".env.example").read_text()
    assert sorted(name for name in names if not re.search(rf"^#? ?{name}=", example, re.MULTILINE)) == []
