"""The site's Redis clients: one redis-py client (and its pool) per process, directly or through Sentinel."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import django_rq
import redis.asyncio
import redis.asyncio.sentinel
from django.conf import settings
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry as RedisRetry
from redis.sentinel import Sentinel
from rq.queue import Queue

from tasks_app.redis_sentinel import FailoverFollowingAsyncConnection

DEFAULT_QUEUE = "default"

_connections: dict[str, Redis] = {}
_queues: dict[tuple[str, int], Queue] = {}


class QueueUnavailable(Exception):
    """Redis cannot be reached (down, unreachable or too slow)."""


@contextmanager
def redis_outage_as_unavailable() -> Iterator[None]:
    """Turn a lost or hung Redis connection into QueueUnavailable (HTTP 503) for the callers."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise QueueUnavailable(str(exc)) from exc


def get_connection(queue_name: str = DEFAULT_QUEUE) -> Redis:
    """This process's Redis client for a queue, built once: its pool keeps connections open."""
    config = settings.RQ_QUEUES[queue_name]
    key = config.get("URL") or repr((config["SENTINELS"], config["MASTER_NAME"], config.get("DB")))
    if key not in _connections:
        _connections[key] = build_connection(config)
    return _connections[key]


def get_queue(queue_name: str) -> Queue:
    """This process's django-rq queue for a name, built once per client (django-rq builds one per call)."""
    connection = get_connection(queue_name)
    key = (queue_name, id(connection))
    if key not in _queues:
        _queues[key] = django_rq.get_queue(queue_name, connection=connection)
    return _queues[key]


@contextmanager
def separate_client() -> Iterator[Redis]:
    """A client of its own, closed after use: Worker.all raises its client's socket timeout to minutes."""
    client = build_connection(settings.RQ_QUEUES[DEFAULT_QUEUE])
    try:
        yield client
    finally:
        client.close()


def build_connection(config: dict[str, Any]) -> Redis:
    """A client for a RQ_QUEUES entry (its URL, or Sentinel), without retries: a dead Redis costs one timeout."""
    if "SENTINELS" not in config:
        return Redis.from_url(config["URL"], retry=RedisRetry(NoBackoff(), 0))
    sentinel = Sentinel(
        config["SENTINELS"],
        sentinel_kwargs={**config.get("SENTINEL_KWARGS", {}), "retry": RedisRetry(NoBackoff(), 0)},
        db=config.get("DB") or 0,
        password=config.get("PASSWORD"),
        socket_timeout=config.get("SOCKET_TIMEOUT"),
        **config.get("CONNECTION_KWARGS", {}),
    )
    return sentinel.master_for(config["MASTER_NAME"], retry=RedisRetry(NoBackoff(), 0))


def build_subscription_connection(config: dict[str, Any]) -> redis.asyncio.Redis:
    """The asyncio client of the event subscription: no read timeout, health checks find a dead connection."""
    if "SENTINELS" not in config:
        return redis.asyncio.Redis.from_url(  # REDIS_URL: without the RQ_QUEUES URL's read timeout
            settings.REDIS_URL, socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT, health_check_interval=10
        )
    sentinel = redis.asyncio.sentinel.Sentinel(
        config["SENTINELS"],
        sentinel_kwargs=config.get("SENTINEL_KWARGS", {}),
        db=config.get("DB") or 0,
        password=config.get("PASSWORD"),
        **{**config.get("CONNECTION_KWARGS", {}), "connection_class": FailoverFollowingAsyncConnection},
    )
    return sentinel.master_for(config["MASTER_NAME"], health_check_interval=10)
