"""The production web server: `python -m taskqueue_site.serve <uvicorn's arguments>`.

uvicorn's command line, with one change for `--workers` above one: the connections are shared
out by a supervisor instead of being left to the workers.

Under uvicorn's own supervisor every worker accepts from one listening socket, and whichever
wakes first takes every pending connection. Keep-alive clients stay where they landed, so a few
of them (a load balancer's pool, a benchmark's 16 clients) can end up 13 to 3, or all on one
worker while the other idles: half the capacity, and a p99 twice what an even split gives
(README, "Benchmarks"). Here the supervisor accepts each connection and hands its socket (over a
Unix socket, SCM_RIGHTS) to the worker with the fewest open connections. It handles no request
data itself: after the hand-over, the client talks to the worker as before.
"""

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import os
import selectors
import signal
import socket
import threading
from multiprocessing.sharedctypes import SynchronizedArray
from types import FrameType

import uvicorn
from uvicorn.config import Config

logger = logging.getLogger("uvicorn.error")

# Connections handed over in one message at most; and how long the supervisor waits between
# looks at its workers (a dead one is replaced) when no connection arrives.
FDS_PER_MESSAGE = 32
CHECK_SECONDS = 0.5
# Slots per worker in the shared array: connections received so far, connections open now.
RECEIVED, OPEN = 0, 1


class ConnectionReceivingServer(uvicorn.Server):
    """A uvicorn server without a listening socket: its connections come from the supervisor."""

    def __init__(self, config: Config, index: int, channel: socket.socket, counts: SynchronizedArray):
        super().__init__(config)
        self.index = index
        self.channel = channel
        self.counts = counts
        self.received = 0
        self.arriving: set[asyncio.Task] = set()  # connections received, not yet taken over by a protocol

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        if self.started:
            self.channel.setblocking(False)
            asyncio.get_running_loop().add_reader(self.channel.fileno(), self.receive_connections)

    def receive_connections(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, fds, _flags, _address = socket.recv_fds(self.channel, FDS_PER_MESSAGE, FDS_PER_MESSAGE)
            except (BlockingIOError, InterruptedError):
                break
            if not data:  # the supervisor is gone: finish what is open, then stop
                loop.remove_reader(self.channel.fileno())
                self.should_exit = True
                break
            for fd in fds:
                self.received += 1
                connection = socket.socket(fileno=fd)
                connection.setblocking(False)
                task = loop.create_task(loop.connect_accepted_socket(self.create_protocol, connection))
                self.arriving.add(task)
                task.add_done_callback(self.arrived)
        self.report()

    def create_protocol(self) -> asyncio.Protocol:
        # What uvicorn's startup() builds for its own listening sockets.
        return self.config.http_protocol_class(
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )

    def arrived(self, task: asyncio.Task) -> None:
        self.arriving.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("could not take over a connection: %s", task.exception())

    def report(self) -> None:
        """Tell the supervisor how many connections came and how many are open (shared memory)."""
        base = 2 * self.index
        self.counts[base + RECEIVED] = self.received
        self.counts[base + OPEN] = len(self.server_state.connections) + len(self.arriving)

    async def on_tick(self, counter: int) -> bool:
        self.report()  # every 0.1 s: closed connections show up here
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
        self.channel.close()
        await super().shutdown(sockets=[])


def run_worker(config: Config, index: int, channel: socket.socket, counts: SynchronizedArray) -> None:
    """A worker process: configure logging as uvicorn's workers do, then serve what arrives."""
    config.configure_logging()
    ConnectionReceivingServer(config, index, channel, counts).run()


class Worker:
    def __init__(self, index: int, process: multiprocessing.process.BaseProcess, channel: socket.socket):
        self.index = index
        self.process = process
        self.channel = channel
        self.sent = 0


class BalancingSupervisor:
    """Stands in for uvicorn's Multiprocess supervisor (same constructor and run())."""

    def __init__(self, config: Config, sockets: list[socket.socket]):
        self.config = config
        self.sockets = sockets
        self.context = multiprocessing.get_context("spawn")
        self.counts = self.context.Array("q", 2 * config.workers, lock=False)
        self.workers: list[Worker] = []
        self.should_exit = threading.Event()
        self.next_choice = 0

    def run(self) -> None:
        logger.info("Started parent process [%d]", os.getpid())
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle_exit)
        self.workers = [self.start_worker(index) for index in range(self.config.workers)]
        selector = selectors.DefaultSelector()
        for listener in self.sockets:
            listener.listen(self.config.backlog)  # uvicorn binds; its servers would listen
            listener.setblocking(False)
            selector.register(listener, selectors.EVENT_READ)
        try:
            while not self.should_exit.is_set():
                for key, _ in selector.select(timeout=CHECK_SECONDS):
                    self.accept_all(key.fileobj)
                self.replace_dead_workers()
        finally:
            selector.close()
            for listener in self.sockets:
                listener.close()
            self.stop_workers()
        logger.info("Stopping parent process [%d]", os.getpid())

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.should_exit.set()

    def start_worker(self, index: int) -> Worker:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        process = self.context.Process(target=run_worker, args=(self.config, index, theirs, self.counts))
        process.start()
        theirs.close()
        self.counts[2 * index + RECEIVED] = self.counts[2 * index + OPEN] = 0
        logger.info("Started worker process [%d]", process.pid)
        return Worker(index, process, mine)

    def accept_all(self, listener: socket.socket) -> None:
        while True:
            try:
                connection, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            with connection:
                self.hand_over(connection)

    def hand_over(self, connection: socket.socket) -> None:
        """Send a connection to the worker with the fewest open ones (counting those still in flight)."""
        for _ in range(len(self.workers)):
            worker = min(self.rotated(), key=self.load)
            try:
                socket.send_fds(worker.channel, [b"c"], [connection.fileno()])
            except OSError as exc:  # that worker is gone: the next look replaces it
                logger.warning("worker [%d] cannot take connections: %s", worker.process.pid, exc)
                worker.sent = -(10**9)  # never chosen again before it is replaced
                continue
            worker.sent += 1
            return
        logger.error("no worker could take a connection; closing it")

    def rotated(self) -> list[Worker]:
        """The workers starting one further each time, so that ties are shared out in turn."""
        self.next_choice = (self.next_choice + 1) % len(self.workers)
        return self.workers[self.next_choice :] + self.workers[: self.next_choice]

    def load(self, worker: Worker) -> int:
        if worker.sent < 0:
            return 10**9
        base = 2 * worker.index
        in_flight = worker.sent - self.counts[base + RECEIVED]
        return self.counts[base + OPEN] + max(in_flight, 0)

    def replace_dead_workers(self) -> None:
        for position, worker in enumerate(self.workers):
            if worker.process.is_alive() or self.should_exit.is_set():
                continue
            logger.error(
                "worker process [%d] died (exit code %s); starting another", worker.process.pid, worker.process.exitcode
            )
            worker.channel.close()
            self.workers[position] = self.start_worker(worker.index)

    def stop_workers(self) -> None:
        """Ask every worker to finish (uvicorn's graceful shutdown), then make sure they are gone."""
        for worker in self.workers:
            if worker.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGTERM)
        grace = (self.config.timeout_graceful_shutdown or 30) + 5
        for worker in self.workers:
            worker.process.join(timeout=grace)
            if worker.process.is_alive():
                logger.error("worker process [%d] did not stop in %d s; killing it", worker.process.pid, grace)
                worker.process.kill()
                worker.process.join()
            worker.channel.close()


def main() -> None:
    # uvicorn's own command line and configuration; only the multi-worker supervisor is ours.
    # (The module, not the `uvicorn.main` attribute: uvicorn's package names its command that.)
    cli = importlib.import_module("uvicorn.main")
    cli.Multiprocess = BalancingSupervisor
    cli.main()


if __name__ == "__main__":
    main()
