"""A Redis Sentinel deployment on loopback: a primary, a replica and three sentinels.

Real Debian `redis-server` and `redis-sentinel` processes on free ports, with their config
files and logs in a temporary directory, stopped by process id when the block ends.
"""

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from tests.support.processes import child_env, free_port, stop, wait_until

MASTER_NAME = "taskqueue"
# Fast enough for a test, slow enough that a busy two-core machine does not fail over by mistake.
DOWN_AFTER_MILLISECONDS = 1000
FAILOVER_TIMEOUT_MILLISECONDS = 3000
PASSWORD = "s3cret-redis-password"  # both servers' requirepass, and the sentinels' auth-pass
SENTINEL_PASSWORD = "s3cret-sentinel-password"  # the sentinels' own requirepass


@dataclass
class SentinelDeployment:
    password: str
    sentinel_password: str
    primary_port: int
    replica_port: int
    sentinel_ports: list[int]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def sentinels(self) -> str:
        """The value of REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def site_env(self, **overrides: str) -> dict[str, str]:
        """The environment of a child Django process that finds Redis through these sentinels."""
        env = child_env(
            REDIS_SENTINELS=self.sentinels,
            REDIS_MASTER_NAME=MASTER_NAME,
            REDIS_PASSWORD=self.password,
            REDIS_SENTINEL_PASSWORD=self.sentinel_password,
            **overrides,
        )
        env.pop("REDIS_URL", None)
        return env

    def client(self, port: int) -> Redis:
        return Redis(host="127.0.0.1", port=port, password=self.password, socket_timeout=1, socket_connect_timeout=1)

    def sentinel(self, port: int) -> Redis:
        return Redis(
            host="127.0.0.1", port=port, password=self.sentinel_password, socket_timeout=1, socket_connect_timeout=1
        )

    def master_port(self) -> int | None:
        """The master's port as the first sentinel sees it."""
        try:
            _host, port = self.sentinel(self.sentinel_ports[0]).sentinel_get_master_addr_by_name(MASTER_NAME)
        except (RedisError, TypeError):
            return None
        return int(port)

    def kill(self, name: str) -> None:
        """SIGKILL one process: no shutdown, no last write, like a machine that loses power."""
        process = self.processes[name]
        process.kill()
        process.wait()


def redis_is_ready(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except RedisError:
        return False


@contextlib.contextmanager
def sentinel_deployment(
    directory: Path, password: str = PASSWORD, sentinel_password: str = SENTINEL_PASSWORD
) -> Iterator[SentinelDeployment]:
    """Start the five processes, wait until the sentinels agree on the topology, yield it."""
    for program in ("redis-server", "redis-sentinel"):
        if shutil.which(program) is None:
            raise RuntimeError(f"{program} is not installed (apt-get install redis-server redis-sentinel)")
    deployment = SentinelDeployment(
        password=password,
        sentinel_password=sentinel_password,
        primary_port=free_port(),
        replica_port=free_port(),
        sentinel_ports=[free_port() for _ in range(3)],
    )
    logs = []

    def spawn(name: str, command: list[str]) -> None:
        log = open(directory / f"{name}.log", "wb")  # noqa: SIM115 - closed below
        logs.append(log)
        deployment.processes[name] = subprocess.Popen(
            command, cwd=directory, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    try:
        for name, port, extra in (
            ("primary", deployment.primary_port, []),
            ("replica", deployment.replica_port, ["--replicaof", "127.0.0.1", str(deployment.primary_port)]),
        ):
            data = directory / name
            data.mkdir()
            spawn(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                         "--save", "", "--appendonly", "no", "--requirepass", password, "--masterauth", password,
                         *extra])  # fmt: skip
        for number, port in enumerate(deployment.sentinel_ports, start=1):
            config = directory / f"sentinel-{number}.conf"  # sentinels rewrite their own file
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"requirepass {sentinel_password}\n"
                f"sentinel sentinel-pass {sentinel_password}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {deployment.primary_port} 2\n"
                f"sentinel auth-pass {MASTER_NAME} {password}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MILLISECONDS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MILLISECONDS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            spawn(f"sentinel-{number}", ["redis-sentinel", str(config)])

        replica = deployment.client(deployment.replica_port)
        try:  # generous: a loaded 2-core machine may take a while to fork the primary for the sync
            wait_until(
                lambda: redis_is_ready(replica) and replica.info("replication").get("master_link_status") == "up",
                60,
                "the replica to sync with the primary",
            )
        except AssertionError as exc:
            tails = {name: (directory / f"{name}.log").read_text()[-1500:] for name in ("primary", "replica")}
            raise AssertionError(f"{exc}; logs: {tails}") from None

        def sentinels_agree() -> bool:
            for port in deployment.sentinel_ports:
                sentinel = deployment.sentinel(port)
                try:
                    if len(sentinel.sentinel_sentinels(MASTER_NAME)) < 2 or not sentinel.sentinel_slaves(MASTER_NAME):
                        return False
                except RedisError:
                    return False
            return True

        wait_until(sentinels_agree, 30, "the sentinels to find each other and the replica", interval=0.2)
        yield deployment
    finally:
        for process in deployment.processes.values():
            stop(process)
        for log in logs:
            log.close()
