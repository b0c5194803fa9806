"""Read-only Redis commands on a connection of the calling thread's own, outside redis-py's pool.

`GET /tasks/<id>` is the request scripts make most, and it is one HGETALL. Through redis-py's
client that read takes the pool's lock, polls the socket for stray data, records telemetry and
goes through the client's retry wrapper; under the production server (four threads a process,
one GIL) that was ~0.08 ms of the request's ~0.56 ms of CPU (README, "Benchmarks"). A thread
that keeps a connection of its own skips all of it.

The connection is built as the pool builds its own (same class and settings: address, database,
password, TLS, timeouts), so it behaves as the client would, with one difference: a kept
connection that the server has closed (a restart, an idle timeout) is found by a failed command
instead of by the pool's check, and the command, a read, is sent once more on a new connection.
A timeout is not retried: a hung Redis costs one socket timeout here as through the client.

Sentinel clients are left to redis-py: their pool follows a failover, which a kept connection
would not notice while the old master still answers.
"""

import os
import threading
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.sentinel import SentinelConnectionPool


@dataclass
class KeptConnection:
    pool: ConnectionPool  # the client's pool it was built like: another pool needs another connection
    connection: AbstractConnection
    pid: int  # a forked child must not share the parent's socket
    served: bool = False  # has answered a command: a failure now may be a connection gone stale


_local = threading.local()


def read(client: Redis, *args: Any) -> Any:
    """Run one read-only command (its name and arguments, as for execute_command) for a client."""
    pool = client.connection_pool
    if (
        isinstance(pool, SentinelConnectionPool) or getattr(pool, "cache", None) is not None
    ):  # see above; a client-side cache
        return client.execute_command(*args)
    kept = kept_connection(pool)
    try:
        return answer(kept, args)
    except RedisConnectionError:
        if not kept.served:
            raise
    kept.served = False  # reconnects in send_command: answer() disconnected it
    return answer(kept, args)


def answer(kept: KeptConnection, args: tuple) -> Any:
    connection = kept.connection
    try:
        connection.send_command(*args)
        response = connection.read_response()
    except ResponseError:
        raise  # Redis refused the command; its reply was read whole, and the connection stays usable
    except BaseException:
        connection.disconnect()  # whatever was half sent or half read goes with it
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
        kept = KeptConnection(pool, pool.connection_class(**pool.connection_kwargs), pid)
        _local.kept = kept
    return kept


def hgetall(client: Redis, key: str) -> dict[bytes, bytes]:
    """HGETALL through read(): a hash's fields and values, empty when there is no such key."""
    reply = read(client, "HGETALL", key)
    if isinstance(reply, dict):  # RESP3 answers with a map
        return reply
    fields = iter(reply)
    return dict(zip(fields, fields, strict=True))
