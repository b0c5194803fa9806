"""The one shim of a library's internals: Redis connections through Sentinel that follow a failover.

redis-py's retry reconnects to the address a Sentinel connection had, not the new master's:
https://github.com/redis/redis-py/issues/3874 (open in 8.1), so a retrying worker quits mid-job.
These classes ask the sentinels before every socket they open to the master. Delete this module and
its two uses once a redis-py release fixes that issue and tests/integration/test_sentinel.py passes.
"""

import redis.asyncio.sentinel
import redis.sentinel


class FailoverFollowingConnection(redis.sentinel.SentinelManagedConnection):
    def _connect(self):
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()


class FailoverFollowingAsyncConnection(redis.asyncio.sentinel.SentinelManagedConnection):
    async def _connect(self):
        if self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        return await super()._connect()
