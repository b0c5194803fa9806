"""Settings for taskqueue, read from the environment with safe development defaults.

Every knob is an environment variable; README.md lists them all. Production is simply
``DJANGO_DEBUG=false`` plus a real ``DJANGO_SECRET_KEY`` and ``DJANGO_ALLOWED_HOSTS``.
"""

import json
import math
from os import environ
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from tasks_app.redis_sentinel import FailoverFollowingConnection

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
    """Read a non-negative, finite number from the environment."""
    value = env_number(name, default, float, "a number")
    if not math.isfinite(value):  # nan would pass every later comparison, and switch checks off
        raise ImproperlyConfigured(f"{name} must be a finite number, not {environ[name].strip()!r}")
    return value


def env_int(name: str, default: int) -> int:
    """Read a non-negative whole number from the environment (0.9 is refused, not read as 0)."""
    return env_number(name, default, int, "a whole number")


def env_number(name: str, default, parse, kind: str):
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {kind}, not {raw!r}") from None
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

# --- HTTPS and security headers (on when DJANGO_DEBUG is off) -----------------------------------

# Production runs behind a TLS proxy; `uvicorn --proxy-headers` believes its X-Forwarded-Proto
# when the proxy's address is in FORWARDED_ALLOW_IPS, so request.is_secure() sees HTTPS.
# /healthz needs no exemption: tasks_app.middleware.HealthCheckMiddleware answers it first.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
# Django's defaults, stated because check --deploy and the tests rely on them.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

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
    # First: load balancers and container healthchecks probe /healthz by IP over plain HTTP.
    "tasks_app.middleware.HealthCheckMiddleware",
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
        # Kept open between requests: every new task writes a history row.
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Every web request that enqueues and every worker status change writes a history row.
    # Write-ahead logging lets readers and the writer proceed together and skips an fsync per
    # commit; IMMEDIATE transactions take the write lock up front, so concurrent writers wait
    # (up to the timeout) instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )

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
STATIC_ROOT = Path(environ.get("DJANGO_STATIC_ROOT") or BASE_DIR / "staticfiles")
STORAGES = {
    # "default" (uploads and thumbnails) is set in the media section below.
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
TASKS_MAX_BODY_BYTES = env_int("TASKS_MAX_BODY_BYTES", 16 * 1024)
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


# --- Redis Sentinel -----------------------------------------------------------------------------

# REDIS_SENTINELS ("host:port,host:port") and REDIS_MASTER_NAME replace REDIS_URL, in the web
# and the workers alike: every client asks the sentinels where the master is whenever it
# connects, so after a failover it finds the promoted replica by itself.


def parse_sentinels(raw: str) -> list[tuple[str, int]]:
    """Read REDIS_SENTINELS, such as "10.0.0.1:26379,10.0.0.2:26379", into (host, port) pairs."""
    sentinels = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        host, _, port = item.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(f"REDIS_SENTINELS must be a list of host:port, not {item!r}")
        sentinels.append((host, int(port)))
    return sentinels


REDIS_SENTINELS = parse_sentinels(environ.get("REDIS_SENTINELS", ""))
REDIS_MASTER_NAME = environ.get("REDIS_MASTER_NAME", "").strip()
if bool(REDIS_SENTINELS) != bool(REDIS_MASTER_NAME):
    raise ImproperlyConfigured("REDIS_SENTINELS and REDIS_MASTER_NAME must be set together")
# With a URL these live in the URL; Sentinel has no URL, so they have their own variables.
REDIS_DB = env_int("REDIS_DB", 0)
REDIS_PASSWORD = environ.get("REDIS_PASSWORD", "")
REDIS_SENTINEL_PASSWORD = environ.get("REDIS_SENTINEL_PASSWORD", "")


def sentinel_connection(
    sentinels: list[tuple[str, int]],
    master_name: str,
    *,
    db: int = 0,
    password: str = "",
    sentinel_password: str = "",
    connect_timeout: float,
    socket_timeout: float,
) -> dict:
    """Return the connection part of an RQ_QUEUES entry for a master found through Sentinel."""
    return {
        "SENTINELS": sentinels,
        "MASTER_NAME": master_name,
        "DB": db,
        "PASSWORD": password or None,
        "SOCKET_TIMEOUT": socket_timeout,
        # Asks the sentinels again on every reconnection, retries included (tasks_app/redis_sentinel.py).
        "CONNECTION_KWARGS": {
            "socket_connect_timeout": connect_timeout,
            "connection_class": FailoverFollowingConnection,
        },
        # A sentinel answers at once or not at all: the connect timeout bounds both waits, so
        # even asking three dead sentinels fits in the two seconds the web allows itself.
        "SENTINEL_KWARGS": {
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": connect_timeout,
            "password": sentinel_password or None,
        },
    }


if REDIS_SENTINELS:
    RQ_CONNECTION = sentinel_connection(
        REDIS_SENTINELS,
        REDIS_MASTER_NAME,
        db=REDIS_DB,
        password=REDIS_PASSWORD,
        sentinel_password=REDIS_SENTINEL_PASSWORD,
        connect_timeout=REDIS_CONNECT_TIMEOUT,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
    )
else:
    RQ_CONNECTION = {"URL": RQ_REDIS_URL}

# Queues drained in this order by `manage.py rqworker high default low`.
TASK_QUEUES = ["high", "default", "low"]

RQ_QUEUES = {
    name: {
        **RQ_CONNECTION,
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
TASK_RESULT_TTL = env_int("TASK_RESULT_TTL", 24 * 3600)


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
        # A failure is rarely transient (the image was checked in the web), so retry once.
        "thumbnail": {"timeout": 120, "max_retries": 1, "retry_intervals": [10]},
        # SMTP servers refuse for a while (4xx, greylisting, restarts): back off up to 15 minutes.
        "confirmation_email": {"timeout": 60, "max_retries": 4, "retry_intervals": [10, 60, 300, 900]},
    },
    environ.get("TASK_POLICIES", ""),
)

# --- Protection against floods -----------------------------------------------------------------

RATE_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_rate(raw: str) -> tuple[int, int] | None:
    """Parse a rate such as "60/m" into (requests, window seconds); "off" (or "0") is None."""
    value = raw.strip().lower()
    if value in {"off", "0", "none", ""}:
        return None
    count, _, unit = value.partition("/")
    if not count.isdigit() or int(count) < 1 or unit not in RATE_UNITS:
        raise ImproperlyConfigured(f"TASKS_RATE_LIMIT must look like 60/m (per s, m or h) or off, not {raw!r}")
    return int(count), RATE_UNITS[unit]


# New tasks per client (IP address) and window: POST /tasks and the page's form answer 429 with
# Retry-After beyond it. "off" disables it (benchmarks do).
TASKS_RATE_LIMIT = environ.get("TASKS_RATE_LIMIT", "60/m")
parse_rate(TASKS_RATE_LIMIT)  # fail at start-up, not on the first request
# New work is refused with 503 while the target queue holds this many waiting jobs (0: no limit).
TASKS_MAX_QUEUE_DEPTH = env_int("TASKS_MAX_QUEUE_DEPTH", 10_000)

# --- Uploads, thumbnails and email -------------------------------------------------------------


def env_int_list(name: str, default: list[int], low: int, high: int) -> list[int]:
    """Read a comma-separated list of whole numbers between low and high, sorted and deduplicated."""
    items = env_list(name, []) or [str(item) for item in default]
    try:
        values = sorted({int(item) for item in items})
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be comma-separated whole numbers, not {items!r}") from None
    if not values or values[0] < low or values[-1] > high:
        raise ImproperlyConfigured(f"{name} must list whole numbers from {low} to {high}")
    return values


def env_json_object(name: str) -> dict:
    """Read a JSON object from the environment (empty when unset)."""
    raw = environ.get(name, "").strip()
    try:
        value = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object")
    return value


# Uploads and thumbnails go through Django's default storage: files under MEDIA_ROOT, unless
# DJANGO_STORAGE_BACKEND names another storage (S3 and the like; its OPTIONS as JSON). Web and
# workers must see the same storage: one disk, a volume shared by containers, or a bucket.
MEDIA_ROOT = Path(environ.get("DJANGO_MEDIA_ROOT", BASE_DIR / "var" / "media"))
MEDIA_URL = environ.get("DJANGO_MEDIA_URL", "/media/")
STORAGES["default"] = {
    "BACKEND": environ.get("DJANGO_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
    "OPTIONS": env_json_object("DJANGO_STORAGE_OPTIONS"),
}
# Django serves MEDIA_URL from MEDIA_ROOT itself in development, and in production when no proxy
# or bucket does (compose); switch it off where a proxy serves the files.
SERVE_MEDIA = env_bool("DJANGO_SERVE_MEDIA", DEBUG)

# Thumbnails fit in squares of these sizes (pixels), made from uploads of at most this many bytes
# and pixels (more pixels than that is refused as a decompression bomb before decoding).
THUMBNAIL_SIZES = env_int_list("THUMBNAIL_SIZES", [128, 256, 512], low=16, high=4096)
THUMBNAIL_MAX_UPLOAD_BYTES = env_int("THUMBNAIL_MAX_UPLOAD_BYTES", 10 * 1024 * 1024)
THUMBNAIL_MAX_PIXELS = env_int("THUMBNAIL_MAX_PIXELS", 50_000_000)
# The first handler stops storing any uploaded file past THUMBNAIL_MAX_UPLOAD_BYTES, so an
# oversized upload never fills the disk, whichever view receives it.
FILE_UPLOAD_HANDLERS = [
    "tasks_app.uploads.UploadLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# Links in emails and thumbnail URLs in job results are absolute, built on this public address.
SITE_URL = environ.get("SITE_URL", "http://127.0.0.1:8000").rstrip("/") + "/"
if urlsplit(SITE_URL).scheme not in {"http", "https"} or not urlsplit(SITE_URL).netloc:
    raise ImproperlyConfigured(f"SITE_URL must be an http:// or https:// address, not {SITE_URL!r}")
# How long a confirmation link works.
CONFIRMATION_MAX_AGE_SECONDS = env_int("CONFIRMATION_MAX_AGE_SECONDS", 2 * 24 * 3600)

# Email: printed to the console in development; SMTP once EMAIL_HOST is set, and always in
# production (a missing server then fails loudly instead of losing mail). EMAIL_BACKEND overrides.
EMAIL_HOST = environ.get("EMAIL_HOST", "").strip()
EMAIL_BACKEND = environ.get("EMAIL_BACKEND", "").strip() or (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST or not DEBUG
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST = EMAIL_HOST or "localhost"
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive: set one of them")
# Seconds before a silent SMTP server counts as a failure (and the job is retried), not forever.
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", 10.0)
DEFAULT_FROM_EMAIL = environ.get("DEFAULT_FROM_EMAIL", "taskqueue <noreply@localhost>")

# --- Job history and monitoring (the admin) --------------------------------------------------------

# `manage.py prune_job_history` deletes rows of jobs that ended longer ago than this.
TASK_HISTORY_RETENTION_DAYS = env_int("TASK_HISTORY_RETENTION_DAYS", 30)
# A worker heartbeats, and runs RQ's maintenance, this often (tasks_app/workers.py).
WORKER_HEARTBEAT_SECONDS = max(1, env_int("WORKER_HEARTBEAT_SECONDS", 5))
# A started job whose worker has been silent this long is failed, or retried per its policy.
TASK_ABANDONED_AFTER_SECONDS = env_float("TASK_ABANDONED_AFTER_SECONDS", 15)
if TASK_ABANDONED_AFTER_SECONDS < 2 * WORKER_HEARTBEAT_SECONDS + 1:
    raise ImproperlyConfigured(
        "TASK_ABANDONED_AFTER_SECONDS must exceed two heartbeats (2 x WORKER_HEARTBEAT_SECONDS + 1), "
        "or busy workers' jobs would be failed as abandoned"
    )

# --- Logging ------------------------------------------------------------------------------------

# One line per event. JSON (taskqueue_site/logs.py) for log collectors in production,
# with the job's id as its own field; plain text for people at a terminal.
LOG_FORMAT = (environ.get("DJANGO_LOG_FORMAT") or ("plain" if DEBUG else "json")).strip().lower()
if LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured(f"DJANGO_LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")
LOG_LEVEL = (environ.get("DJANGO_LOG_LEVEL") or "INFO").strip().upper()

LOGGING_CONFIG = "taskqueue_site.logs.configure_logging"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "taskqueue_site.logs.JSONFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # uvicorn configures its loggers before it loads Django (from taskqueue_site/
        # uvicorn_logging.json in production); in each server process Django then sends its
        # server and access logs through our handler, in the chosen format.
        "uvicorn": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "uvicorn.access": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        # Python warnings (configure_logging captures them) as events too, not raw stderr text.
        "py.warnings": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
