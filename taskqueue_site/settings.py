"""Settings for taskqueue, read from the environment with safe development defaults.

Every knob is an environment variable; README.md lists them all. Production is simply
``DJANGO_DEBUG=false`` plus a real ``DJANGO_SECRET_KEY`` and ``DJANGO_ALLOWED_HOSTS``.
"""

import json
from os import environ
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean environment variable such as DJANGO_DEBUG=false."""
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_float(name: str, default: float) -> float:
    """Read a non-negative number from the environment."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise ImproperlyConfigured(f"{name} must not be negative")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """Read a comma-separated list from the environment."""
    raw = environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", True)

SECRET_KEY = environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must be set when DJANGO_DEBUG is off")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "tasks_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "taskqueue_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "taskqueue_site.wsgi.application"
ASGI_APPLICATION = "taskqueue_site.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=int(env_float("DATABASE_CONN_MAX_AGE", 0)),
    )
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(environ.get("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The public API takes small bodies only ({"type": 1}); anything larger is refused with a 400
# before Django parses it.
TASKS_MAX_BODY_BYTES = int(env_float("TASKS_MAX_BODY_BYTES", 16 * 1024))
DATA_UPLOAD_MAX_MEMORY_SIZE = max(TASKS_MAX_BODY_BYTES, 2_621_440)

# --- Redis and RQ -------------------------------------------------------------------------------

REDIS_URL = environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Seconds to wait for Redis before answering 503. Keep the sum of both under two seconds.
REDIS_SOCKET_TIMEOUT = env_float("REDIS_SOCKET_TIMEOUT", 1.0)
REDIS_CONNECT_TIMEOUT = env_float("REDIS_CONNECT_TIMEOUT", 0.5)


def redis_url_with_timeouts(url: str, connect_timeout: float, socket_timeout: float) -> str:
    """Add socket timeouts to a Redis URL unless it already names them.

    django-rq ignores CONNECTION_KWARGS for a queue configured by URL, but redis-py reads
    these query parameters from the URL itself, so every client built from it (ours, the
    worker's, django-rq's admin pages) gives up on a dead server instead of hanging.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(f"REDIS_URL must start with redis://, rediss:// or unix://, not {url!r}")
    query = dict(parse_qsl(parts.query))
    query.setdefault("socket_connect_timeout", str(connect_timeout))
    query.setdefault("socket_timeout", str(socket_timeout))
    return urlunsplit(parts._replace(query=urlencode(query)))


RQ_REDIS_URL = redis_url_with_timeouts(REDIS_URL, REDIS_CONNECT_TIMEOUT, REDIS_SOCKET_TIMEOUT)

# Queues drained in this order by `manage.py rqworker high default low`.
TASK_QUEUES = ["high", "default", "low"]

RQ_QUEUES = {
    name: {
        "URL": RQ_REDIS_URL,
        # JSON, never pickle: whoever can write to Redis must not be able to run code in a worker.
        "SERIALIZER": "rq.serializers.JSONSerializer",
        "DEFAULT_TIMEOUT": 3600,
    }
    for name in TASK_QUEUES
}

RQ = {
    # Enqueue at once so the view can answer with the job's id.
    "COMMIT_MODE": "auto",
    # Forces the JSON serializer even when `rqworker` is run without --serializer.
    "WORKER_CLASS": "tasks_app.workers.JSONWorker",
}
RQ_SHOW_ADMIN_LINK = True
# Bearer token for django-rq's JSON stats and Prometheus metrics (Authorization header only).
RQ_API_TOKEN = environ.get("RQ_API_TOKEN", "")

# --- The tasks ----------------------------------------------------------------------------------

# Task type N sleeps N x TASK_UNIT_SECONDS (the original app: 10, 20, 30 seconds).
TASK_UNIT_SECONDS = env_float("TASK_UNIT_SECONDS", 10.0)
# How long finished and failed jobs stay readable through GET /tasks/<id>.
TASK_RESULT_TTL = int(env_float("TASK_RESULT_TTL", 24 * 3600))


def task_policies(defaults: dict[str, dict], raw: str) -> dict[str, dict]:
    """Merge TASK_POLICIES (JSON, such as {"sleep": {"timeout": 90}}) onto the defaults."""
    if not raw.strip():
        return defaults
    try:
        overrides = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"TASK_POLICIES is not valid JSON: {exc}") from None
    policies = {kind: dict(policy) for kind, policy in defaults.items()}
    for kind, policy in overrides.items() if isinstance(overrides, dict) else [(None, None)]:
        if kind not in policies or not isinstance(policy, dict) or not set(policy) <= set(policies[kind]):
            raise ImproperlyConfigured(
                f"TASK_POLICIES: unknown task kind or field in {kind!r}; kinds are {sorted(policies)}, "
                "fields are timeout, max_retries and retry_intervals"
            )
        policies[kind].update(policy)
    for kind, policy in policies.items():
        intervals = policy["retry_intervals"]
        valid = (
            isinstance(policy["timeout"], int)
            and policy["timeout"] > 0
            and isinstance(policy["max_retries"], int)
            and policy["max_retries"] >= 0
            and isinstance(intervals, list)
            and all(isinstance(seconds, int) and seconds >= 0 for seconds in intervals)
        )
        if not valid:
            raise ImproperlyConfigured(
                f"TASK_POLICIES[{kind!r}]: timeout must be a positive integer, max_retries a whole number "
                "and retry_intervals a list of whole seconds"
            )
    return policies


# Per kind of task: the job timeout (seconds), how many times a failure is retried, and the
# waits between attempts (the last one repeats). Override any of it with TASK_POLICIES (JSON).
TASK_POLICIES = task_policies(
    {
        "sleep": {
            "timeout": int(max(60, 6 * TASK_UNIT_SECONDS)),
            "max_retries": 2,
            "retry_intervals": [5, 30],
        },
    },
    environ.get("TASK_POLICIES", ""),
)

# --- Job history and monitoring (the admin) --------------------------------------------------------

# `manage.py prune_job_history` deletes rows of jobs that ended longer ago than this.
TASK_HISTORY_RETENTION_DAYS = int(env_float("TASK_HISTORY_RETENTION_DAYS", 30))
# A busy worker heartbeats this often (RQ's job_monitoring_interval, 30 s by default in RQ).
WORKER_HEARTBEAT_SECONDS = max(1, int(env_float("WORKER_HEARTBEAT_SECONDS", 5)))
# A started job whose worker has been silent this long is failed, or retried per its policy.
TASK_ABANDONED_AFTER_SECONDS = env_float("TASK_ABANDONED_AFTER_SECONDS", 15)
# Live workers look for such jobs this often (one of them at a time).
TASK_ABANDONED_CHECK_SECONDS = max(1.0, env_float("TASK_ABANDONED_CHECK_SECONDS", 5))
if TASK_ABANDONED_AFTER_SECONDS < 2 * WORKER_HEARTBEAT_SECONDS + 1:
    raise ImproperlyConfigured(
        "TASK_ABANDONED_AFTER_SECONDS must exceed two heartbeats (2 x WORKER_HEARTBEAT_SECONDS + 1), "
        "or busy workers' jobs would be failed as abandoned"
    )

# --- Logging ------------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": environ.get("DJANGO_LOG_LEVEL", "INFO")},
}
