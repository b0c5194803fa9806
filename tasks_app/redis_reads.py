"""The status read (a job's hash, an ended job's latest result) on a connection of the thread's own.

`GET /tasks/<id>` is the request scripts make most: one HGETALL, and for an ended job one
XREVRANGE of its results too. Through redis-py's client each read takes the pool's lock, polls
the socket for stray data, records telemetry and goes through the client's retry wrapper:
~0.045 ms of CPU in one thread, more under the production server, where four threads of a
process share the GIL (README, "Benchmarks"). A thread that keeps a connection of its own skips
all of it.

The connection is built as the pool builds its own (same class and settings: address, database,
password, TLS, timeouts, protocol). What the pool would do for it, this module does or avoids:
- a connection the server has closed (a restart, an idle timeout) is found by the failed read,
  not by the pool's check before sending, and the read is sent once more on a new connection;
  a timeout is not retried, so a hung Redis costs one socket timeout as through the client;
- a connection is closed when its thread ends, and never shared with a forked child;
- clients whose pool manages its connections further are left to redis-py: Sentinel (the pool
  follows a failover, which a kept connection would not notice while the old master answers),
  a client-side cache, and maintenance notifications (Redis Enterprise moves connections
  during maintenance). The site's own client turns the last off (services.build_connection).
redis-py's connection telemetry does not count these connections.
"""

import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.sentinel import SentinelConnectionPool


@dataclass(eq=False)
class KeptConnection:
    pool: ConnectionPool  # the client's pool it was built like: another pool needs another connection
    connection: AbstractConnection
    pid: int  # a forked child must not share the parent's socket
    served: bool = False  # answered the last command: a failure now may be a connection gone stale


_local = threading.local()


def hgetall(client: Redis, key: str | bytes) -> dict[bytes, bytes]:
    """A hash's fields and values (empty when there is no such key), read for a client's server."""
    if left_to_redis_py(client.connection_pool):
        return client.hgetall(key)
    return as_dict(read_again_if_stale(kept_connection(client.connection_pool), ("HGETALL", key)))


def latest_entry(client: Redis, key: str | bytes) -> tuple[bytes, dict[bytes, bytes]] | None:
    """The last entry of a stream (XREVRANGE key + - COUNT 1): its id and fields; None when there is none."""
    if left_to_redis_py(client.connection_pool):
        entries = client.xrevrange(key, "+", "-", count=1)
    else:
        command = ("XREVRANGE", key, "+", "-", "COUNT", 1)
        entries = read_again_if_stale(kept_connection(client.connection_pool), command)
    if not entries:
        return None
    entry_id, fields = entries[0]
    return entry_id, as_dict(fields)


def left_to_redis_py(pool: ConnectionPool) -> bool:
    """Whether the pool manages its connections further than building them (see above)."""
    return (
        isinstance(pool, SentinelConnectionPool)
        or getattr(pool, "cache", None) is not None
        or bool(pool.maint_notifications_enabled())
    )


def as_dict(reply: dict | list) -> dict:
    """Fields and values as a dict: RESP3 answers with a map, RESP2 with a flat list."""
    if isinstance(reply, dict):
        return reply
    fields = iter(reply)
    return dict(zip(fields, fields, strict=True))


def read_again_if_stale(kept: KeptConnection, command: tuple) -> Any:
    """Send a read-only command; once more on a new connection if the kept one had gone stale."""
    could_be_stale = kept.served
    try:
        return answer(kept, command)
    except RedisConnectionError:
        if not could_be_stale:
            raise  # a new connection that fails: Redis is down, asking again would not help
    return answer(kept, command)  # send_command reconnects: answer() has disconnected it


def answer(kept: KeptConnection, command: tuple) -> Any:
    connection = kept.connection
    try:
        connection.send_command(*command)
        response = connection.read_response()
    except ResponseError:
        raise  # Redis refused the command; its reply was read whole, and the connection stays usable
    except BaseException:
        connection.disconnect()  # whatever was half sent or half read goes with it
        kept.served = False
        raise
    kept.served = True
    return response


def kept_connection(pool: ConnectionPool) -> KeptConnection:
    """This thread's connection for a pool's server, built at the first read (and again after a fork)."""
    kept: KeptConnection | None = getattr(_local, "kept", None)
    pid = os.getpid()
    if kept is None or kept.pool is not pool or kept.pid != pid:
        if kept is not None and kept.pid == pid:
            kept.connection.disconnect()
        connection = pool.connection_class(**pool.connection_kwargs)
        kept = KeptConnection(pool, connection, pid)
        # Closed when the thread ends and its KeptConnection goes (a forked child's copy only
        # closes its own descriptor: redis-py shuts the socket down in the process that opened it).
        weakref.finalize(kept, connection.disconnect)
        _local.kept = kept
    return kept
