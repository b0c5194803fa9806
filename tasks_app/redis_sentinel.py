"""The one shim of a library's internals: Redis connections through Sentinel that follow a failover.

redis-py's Sentinel connection asks the sentinels for the master's address in `connect()` only.
A client-level retry reconnects the same connection through `connect_check_health()`, which
goes back to the address it had: https://github.com/redis/redis-py/issues/3874 (open in 8.1).
A worker retrying through a failover (tasks_app/workers.py gives it about 30 s of retries) then
knocks at the dead primary every time, gives up, and quits in the middle of a job. These
classes override `_connect` to ask the sentinels before every socket they open to the master.
Delete this module, and its two uses (settings.RQ_QUEUES, connections.build_subscription_connection),
once a redis-py release fixes that issue and tests/integration/test_sentinel.py passes without it.
The settings make no TLS connections to Redis through Sentinel; that would need TLS variants.
"""

import redis.asyncio.sentinel
import redis.sentinel


class FailoverFollowingConnection(redis.sentinel.SentinelManagedConnection):
    def _connect(self):
        if self.connection_pool.is_master:
            # One question more on a first connect (connect() has just asked), for correctness
            # on every reconnection; connections are pooled, so this is rare.
            self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()


class FailoverFollowingAsyncConnection(redis.asyncio.sentinel.SentinelManagedConnection):
    async def _connect(self):
        if self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        return await super()._connect()
