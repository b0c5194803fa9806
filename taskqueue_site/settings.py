"""Settings for taskqueue, from environment variables with development defaults.

.env.example lists and explains every variable; comments here say only why.
"""

import logging
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured
from environs import Env, ValidationError, validate
from marshmallow import Schema, fields

BASE_DIR = Path(__file__).resolve().parent.parent

# A malformed value stops the start-up with an error that names the variable.
env = Env()
NON_NEGATIVE = validate.Range(min=0)


def names(variable: str, default: list[str]) -> list[str]:
    return [name for name in env.list(variable, default, subcast=str.strip) if name]


DEBUG = env.bool("DJANGO_DEBUG", True)
# Debug pages and error mails leave out every setting and variable that may hold a password.
DEFAULT_EXCEPTION_REPORTER_FILTER = "taskqueue_site.logs.SecretHidingFilter"

SECRET_KEY = env.str("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = names("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must be set when DJANGO_DEBUG is off")
CSRF_TRUSTED_ORIGINS = names("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# Behind a TLS proxy, the server believes X-Forwarded-Proto from FORWARDED_ALLOW_IPS. /healthz needs
# no exemption from the redirect: tasks_app.middleware.HealthCheckMiddleware answers it first.
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600, validate=NON_NEGATIVE)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "axes",
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
    "axes.middleware.AxesMiddleware",  # last, as django-axes requires
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

DATABASES = {
    "default": env.dj_db_url(
        "DATABASE_URL",
        f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env.int("DATABASE_CONN_MAX_AGE", 60, validate=NON_NEGATIVE),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and workers write history rows at once: WAL lets readers and the writer proceed together,
    # and IMMEDIATE transactions make writers wait for the lock instead of failing "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", transaction_mode="IMMEDIATE", timeout=20
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# django-axes: after ADMIN_LOGIN_FAILURE_LIMIT wrong passwords, an account and, separately, an address
# are locked out (429) for ADMIN_LOGIN_LOCKOUT_MINUTES. The address is REMOTE_ADDR, which uvicorn
# takes from X-Forwarded-For only for FORWARDED_ALLOW_IPS.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", 5, validate=validate.Range(min=1))
AXES_COOLOFF_TIME = timedelta(minutes=env.float("ADMIN_LOGIN_LOCKOUT_MINUTES", 15, validate=NON_NEGATIVE))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True

TIME_ZONE = "UTC"

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles")
STORAGES = {"staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
if DEBUG:  # serves files as they are, with no manifest to build first
    STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The public API takes small bodies only ({"type": 1}); larger ones are refused before parsing.
TASKS_MAX_BODY_BYTES = env.int("TASKS_MAX_BODY_BYTES", 16 * 1024, validate=NON_NEGATIVE)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(TASKS_MAX_BODY_BYTES, 2_621_440)

REDIS_URL = env.str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Seconds to wait for Redis before answering 503. Keep the sum of both under two seconds.
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", 1.0, validate=NON_NEGATIVE)
REDIS_CONNECT_TIMEOUT = env.float("REDIS_CONNECT_TIMEOUT", 0.5, validate=NON_NEGATIVE)


def redis_url_with_timeouts(url: str, connect_timeout: float, socket_timeout: float) -> str:
    """Add socket timeouts to a Redis URL unless it names them: django-rq ignores CONNECTION_KWARGS for a URL."""
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(f"REDIS_URL must start with redis://, rediss:// or unix://, not {url!r}")
    query = dict(parse_qsl(parts.query))
    query.setdefault("socket_connect_timeout", str(connect_timeout))
    query.setdefault("socket_timeout", str(socket_timeout))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


RQ_REDIS_URL = redis_url_with_timeouts(REDIS_URL, REDIS_CONNECT_TIMEOUT, REDIS_SOCKET_TIMEOUT)

# REDIS_SENTINELS ("host:port,...") and REDIS_MASTER_NAME replace REDIS_URL: every client asks the
# sentinels where the master is whenever it connects, so it follows a failover by itself.


def host_and_port(item: str) -> tuple[str, int]:
    host, _, port = item.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValidationError(f"{item.strip()!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


REDIS_SENTINELS = env.list("REDIS_SENTINELS", [], subcast=host_and_port)
REDIS_MASTER_NAME = env.str("REDIS_MASTER_NAME", "").strip()
if bool(REDIS_SENTINELS) != bool(REDIS_MASTER_NAME):
    raise ImproperlyConfigured("REDIS_SENTINELS and REDIS_MASTER_NAME must be set together")
REDIS_DB = env.int("REDIS_DB", 0, validate=NON_NEGATIVE)
REDIS_PASSWORD = env.str("REDIS_PASSWORD", "")
REDIS_SENTINEL_PASSWORD = env.str("REDIS_SENTINEL_PASSWORD", "")


def sentinel_connection(
    sentinels: list[tuple[str, int]],
    master_name: str,
    *,
    db: int = 0,
    password: str = "",
    sentinel_password: str = "",
    connect_timeout: float,
    socket_timeout: float,
    connection_class: type | str = "tasks_app.redis_sentinel.FailoverFollowingConnection",
) -> dict:
    """Return the connection part of an RQ_QUEUES entry for a master found through Sentinel."""
    return {
        "SENTINELS": sentinels,
        "MASTER_NAME": master_name,
        "DB": db,
        "PASSWORD": password or None,
        "SOCKET_TIMEOUT": socket_timeout,
        # The class by its path, as settings import no app code; tasks_app's AppConfig.ready() imports it.
        "CONNECTION_KWARGS": {"socket_connect_timeout": connect_timeout, "connection_class": connection_class},
        # A sentinel answers at once or not at all: the connect timeout bounds both waits.
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

# Enqueue at once, so the view can answer with the job's id; JSON even for `rqworker` without --serializer.
RQ = {"COMMIT_MODE": "auto", "WORKER_CLASS": "tasks_app.workers.JSONWorker"}
RQ_SHOW_ADMIN_LINK = True
RQ_API_TOKEN = env.str("RQ_API_TOKEN", "")

TASK_UNIT_SECONDS = env.float("TASK_UNIT_SECONDS", 10.0, validate=NON_NEGATIVE)
TASK_RESULT_TTL = env.int("TASK_RESULT_TTL", 24 * 3600, validate=NON_NEGATIVE)


class TaskPolicy(Schema):
    timeout = fields.Int(strict=True, validate=validate.Range(min=1))
    max_retries = fields.Int(strict=True, validate=NON_NEGATIVE)
    retry_intervals = fields.List(fields.Int(strict=True, validate=NON_NEGATIVE))


# Per kind of task: timeout (seconds), retries, and the waits between attempts (the last repeats).
TASK_POLICIES = {
    "sleep": {"timeout": int(max(60, 6 * TASK_UNIT_SECONDS)), "max_retries": 2, "retry_intervals": [5, 30]},
    # A failure is rarely transient (the image was checked in the web), so retry once.
    "thumbnail": {"timeout": 120, "max_retries": 1, "retry_intervals": [10]},
    # SMTP servers refuse for a while (4xx, greylisting, restarts): back off up to 15 minutes.
    "confirmation_email": {"timeout": 60, "max_retries": 4, "retry_intervals": [10, 60, 300, 900]},
}
# Unknown kinds and fields, and bad values, are refused.
TASK_POLICY_OVERRIDES = Schema.from_dict({kind: fields.Nested(TaskPolicy) for kind in TASK_POLICIES})()
for kind, override in env.json("TASK_POLICIES", {}, validate=TASK_POLICY_OVERRIDES.load).items():
    TASK_POLICIES[kind].update(override)

RATE_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_rate(raw: str, name: str = "TASKS_RATE_LIMIT") -> tuple[int, int] | None:
    """Parse a rate such as "60/m" into (requests, window seconds); "off" is None."""
    value = raw.strip().lower()
    if value in {"off", "0", "none", ""}:
        return None
    count, _, unit = value.partition("/")
    if not count.isdigit() or int(count) < 1 or unit not in RATE_UNITS:
        raise ImproperlyConfigured(f"{name} must look like 60/m (per s, m or h) or off, not {raw!r}")
    return int(count), RATE_UNITS[unit]


TASKS_RATE_LIMIT = env.str("TASKS_RATE_LIMIT", "60/m")
parse_rate(TASKS_RATE_LIMIT)  # fail at start-up, not on the first request
# Confirmation emails to one address, so that the site cannot be used to flood someone's inbox.
CONFIRMATION_EMAILS_PER_ADDRESS = env.str("CONFIRMATION_EMAILS_PER_ADDRESS", "3/h")
parse_rate(CONFIRMATION_EMAILS_PER_ADDRESS, "CONFIRMATION_EMAILS_PER_ADDRESS")
TASKS_MAX_QUEUE_DEPTH = env.int("TASKS_MAX_QUEUE_DEPTH", 10_000, validate=NON_NEGATIVE)


def json_object(value) -> None:
    if not isinstance(value, dict):
        raise ValidationError("Must be a JSON object.")


# Uploads and thumbnails go through the default storage, which web and workers must share.
MEDIA_ROOT = env.path("DJANGO_MEDIA_ROOT", BASE_DIR / "var" / "media")
MEDIA_URL = env.str("DJANGO_MEDIA_URL", "/media/")
STORAGES["default"] = {
    "BACKEND": env.str("DJANGO_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
    "OPTIONS": env.json("DJANGO_STORAGE_OPTIONS", {}, validate=json_object),
}
SERVE_MEDIA = env.bool("DJANGO_SERVE_MEDIA", DEBUG)

# Square sizes of thumbnails (pixels); more pixels than the limit is refused as a decompression bomb.
THUMBNAIL_SIZES = env.list("THUMBNAIL_SIZES", [128, 256, 512], subcast=int, validate=validate.Length(min=1))
THUMBNAIL_SIZES = sorted(set(THUMBNAIL_SIZES))
if not 16 <= THUMBNAIL_SIZES[0] <= THUMBNAIL_SIZES[-1] <= 4096:
    raise ImproperlyConfigured("THUMBNAIL_SIZES must list whole numbers from 16 to 4096")
THUMBNAIL_MAX_UPLOAD_BYTES = env.int("THUMBNAIL_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, validate=NON_NEGATIVE)
THUMBNAIL_MAX_PIXELS = env.int("THUMBNAIL_MAX_PIXELS", 50_000_000, validate=NON_NEGATIVE)
# The first handler stops storing any upload past THUMBNAIL_MAX_UPLOAD_BYTES, whichever view gets it.
FILE_UPLOAD_HANDLERS = [
    "tasks_app.uploads.UploadLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

SITE_URL = env.str(
    "SITE_URL", "http://127.0.0.1:8000", validate=validate.URL(schemes={"http", "https"}, require_tld=False)
)
SITE_URL = SITE_URL.rstrip("/") + "/"
CONFIRMATION_MAX_AGE_SECONDS = env.int("CONFIRMATION_MAX_AGE_SECONDS", 2 * 24 * 3600, validate=NON_NEGATIVE)

# Console in development; SMTP once EMAIL_HOST is set, and always in production (fails loudly).
EMAIL_HOST = env.str("EMAIL_HOST", "").strip()
EMAIL_BACKEND = env.str("EMAIL_BACKEND", "").strip() or (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST or not DEBUG
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST = EMAIL_HOST or "localhost"
EMAIL_PORT = env.int("EMAIL_PORT", 25, validate=NON_NEGATIVE)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive: set one of them")
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", 10.0, validate=NON_NEGATIVE)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", "taskqueue <noreply@localhost>")

TASK_HISTORY_RETENTION_DAYS = env.int("TASK_HISTORY_RETENTION_DAYS", 30, validate=NON_NEGATIVE)
WORKER_HEARTBEAT_SECONDS = env.int("WORKER_HEARTBEAT_SECONDS", 5, validate=validate.Range(min=1))
TASK_ABANDONED_AFTER_SECONDS = env.float("TASK_ABANDONED_AFTER_SECONDS", 15, validate=NON_NEGATIVE)
if TASK_ABANDONED_AFTER_SECONDS < 2 * WORKER_HEARTBEAT_SECONDS + 1:
    raise ImproperlyConfigured(
        "TASK_ABANDONED_AFTER_SECONDS must exceed two heartbeats (2 x WORKER_HEARTBEAT_SECONDS + 1), "
        "or busy workers' jobs would be failed as abandoned"
    )

# One line per event: JSON with the job's id as a field for log collectors, plain text for people.
LOG_FORMAT = env.str("DJANGO_LOG_FORMAT", "plain" if DEBUG else "json", validate=validate.OneOf(["json", "plain"]))
LOG_LEVEL = env.log_level("DJANGO_LOG_LEVEL", "INFO")

logging.captureWarnings(True)  # Python warnings become log events, not raw stderr text
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
        # The server's own logs go through our handler too, in the chosen format.
        "uvicorn": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "uvicorn.access": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "py.warnings": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
