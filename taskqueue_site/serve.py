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

A worker that stops (a restart, --limit-max-requests, SIGHUP) first shuts its channel for
reading, so that the supervisor sends elsewhere, and gives back the connections still waiting in
it, and those it took over whose client has not sent a byte yet (closing one of these would
reset a request already on its way); none is dropped. Keep-alive connections idle between
requests are closed, as uvicorn closes them, which HTTP clients expect. Its replacement starts
at once, while it finishes the requests in progress (an event stream may take a while).
"""

import asyncio
import collections
import contextlib
import errno
import importlib
import logging
import multiprocessing
import os
import selectors
import signal
import socket
import sys
import threading
import time
from multiprocessing.sharedctypes import SynchronizedArray
from types import FrameType

import uvicorn
from uvicorn.config import Config

logger = logging.getLogger("uvicorn.error")

FDS_PER_MESSAGE = 32  # connections passed in one message at most
CHECK_SECONDS = 0.5  # how often the supervisor looks at its workers when nothing else happens
STARTUP_FAILURE = 3  # uvicorn's exit code for a server that could not start
MAX_FAILED_STARTS = 3  # workers in a row that die before serving: the supervisor gives up
# The shared array holds these per worker: connections received so far, connections open now,
# and the time of the worker's last tick (ms), which tells the supervisor it is alive.
RECEIVED, OPEN, TICKED_AT = range(3)
SLOTS = 3
# Errors of accept() that mean "out of resources for now", as asyncio treats them.
RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def now_ms() -> int:
    return int(time.time() * 1000)


class ConnectionReceivingServer(uvicorn.Server):
    """A uvicorn server without a listening socket: its connections come from the supervisor."""

    def __init__(self, config: Config, slot: int, channel: socket.socket, counts: SynchronizedArray):
        super().__init__(config)
        self.slot = slot
        self.channel = channel
        self.counts = counts
        self.received = 0
        self.arriving: set[asyncio.Task] = set()  # connections received, not yet taken over by a protocol
        self.protocol_class: type[asyncio.Protocol] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        if self.started:
            self.protocol_class = noting_first_bytes(self.config.http_protocol_class)
            self.channel.setblocking(False)
            asyncio.get_running_loop().add_reader(self.channel.fileno(), self.receive_connections)

    def receive_connections(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, fds, flags, _address = socket.recv_fds(self.channel, FDS_PER_MESSAGE, FDS_PER_MESSAGE)
            except (BlockingIOError, InterruptedError):
                break
            if not data:  # the supervisor is gone: finish what is open, then stop
                loop.remove_reader(self.channel.fileno())
                self.should_exit = True
                break
            self.received += len(data)  # one byte a connection, whether its socket arrived or not
            if flags & socket.MSG_CTRUNC:
                logger.error("%d connections lost: this process has no file descriptors left", len(data) - len(fds))
            for fd in fds:
                connection = socket.socket(fileno=fd)
                connection.setblocking(False)
                task = loop.create_task(
                    loop.connect_accepted_socket(self.create_protocol, connection, ssl=self.config.ssl)
                )
                self.arriving.add(task)
                task.add_done_callback(self.arrived)
        self.report()

    def create_protocol(self) -> asyncio.Protocol:
        # What uvicorn's startup() builds for its own listening sockets.
        return self.protocol_class(config=self.config, server_state=self.server_state, app_state=self.lifespan.state)

    def arrived(self, task: asyncio.Task) -> None:
        self.arriving.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("could not take over a connection: %s", task.exception())

    def report(self) -> None:
        """Tell the supervisor how many connections came and are open, and that this loop runs."""
        base = SLOTS * self.slot
        self.counts[base + RECEIVED] = self.received
        self.counts[base + OPEN] = len(self.server_state.connections) + len(self.arriving)
        self.counts[base + TICKED_AT] = now_ms()

    async def on_tick(self, counter: int) -> bool:
        self.report()  # every 0.1 s: closed connections show up here
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        reporting = asyncio.create_task(self.keep_reporting())  # stopping is not hanging
        try:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self.channel.fileno())
            with contextlib.suppress(OSError):
                self.channel.shutdown(socket.SHUT_RD)  # the supervisor's next send fails: it sends elsewhere
            if self.arriving:  # received, not yet taken over: once they are, the silent ones can go back
                await asyncio.wait(set(self.arriving), timeout=1)
            self.channel.settimeout(1)
            self.give_back_waiting_connections()
            self.give_back_silent_connections()
            self.channel.close()
            await super().shutdown(sockets=[])  # closes what is left as uvicorn does, and waits for the rest
        finally:
            reporting.cancel()

    async def keep_reporting(self) -> None:
        """While requests finish: the supervisor kills a worker whose loop stops ticking."""
        while True:
            self.report()
            await asyncio.sleep(0.1)

    def give_back_waiting_connections(self) -> None:
        """Return the connections the supervisor sent that this worker has not read from its channel."""
        while True:
            try:
                data, fds, _flags, _address = socket.recv_fds(self.channel, FDS_PER_MESSAGE, FDS_PER_MESSAGE)
            except OSError:
                break
            if not data:
                break
            try:
                socket.send_fds(self.channel, [b"r" * len(fds)], fds)
            except OSError as exc:
                logger.error("could not give %d connections back: %s", len(fds), exc)
            for fd in fds:
                os.close(fd)

    def give_back_silent_connections(self) -> None:
        """Return the connections taken over whose client has sent nothing yet.

        uvicorn would close them; a request sent meanwhile would then meet a reset. The socket goes
        back as it is (a duplicate of its descriptor), and closing this worker's copy ends nothing.
        """
        if self.config.ssl:  # a TLS session cannot change process halfway through its handshake
            return
        for protocol in list(self.server_state.connections):
            transport = getattr(protocol, "transport", None)
            if getattr(protocol, "heard_from_client", True) or transport is None or transport.is_closing():
                continue
            connection = transport.get_extra_info("socket")
            if connection is None:
                continue
            transport.pause_reading()
            try:
                duplicate = os.dup(connection.fileno())
                try:
                    socket.send_fds(self.channel, [b"r"], [duplicate])
                finally:
                    os.close(duplicate)
            except OSError as exc:
                logger.error("could not give a connection back: %s", exc)
                transport.resume_reading()  # then uvicorn closes it, as it would have
                continue
            transport.abort()


def noting_first_bytes(protocol_class: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, remembering whether the client has sent anything yet."""

    class Protocol(protocol_class):  # type: ignore[valid-type,misc]
        heard_from_client = False

        def data_received(self, data: bytes) -> None:
            self.heard_from_client = True
            super().data_received(data)

    return Protocol


def run_worker(config: Config, slot: int, channel: socket.socket, counts: SynchronizedArray) -> None:
    """A worker process: configure logging as uvicorn's workers do, then serve what arrives."""
    config.configure_logging()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C reaches every process: uvicorn stops quietly
        ConnectionReceivingServer(config, slot, channel, counts).run()


class Worker:
    def __init__(self, slot: int, process: multiprocessing.process.BaseProcess, channel: socket.socket):
        self.slot = slot  # its place in the shared array
        self.process = process
        self.channel = channel
        self.sent = 0
        self.closed = False  # its channel no longer takes connections: it stops, and is replaced


class BalancingSupervisor:
    """Stands in for uvicorn's Multiprocess supervisor (same constructor and run())."""

    def __init__(self, config: Config, sockets: list[socket.socket]):
        self.config = config
        self.sockets = sockets
        self.context = multiprocessing.get_context("spawn")
        # Twice the slots of the workers: a replacement starts as soon as a worker stops taking
        # connections, while the old one still finishes its requests (SSE streams may take long).
        self.counts = self.context.Array("q", SLOTS * config.workers * 2, lock=False)
        self.free_slots = list(range(config.workers * 2))
        self.workers: list[Worker] = []  # those that take connections
        self.draining: list[Worker] = []  # stopping: finishing their requests, already replaced
        self.selector = selectors.DefaultSelector()
        self.should_exit = threading.Event()
        self.restart_requested = False
        self.exit_code = 0
        self.failed_starts = 0
        self.next_choice = 0
        # Connections accepted or given back that no worker has taken yet. While there are any,
        # the supervisor accepts no more: the next ones wait in the kernel's backlog.
        self.pending: collections.deque[socket.socket] = collections.deque()

    def run(self) -> None:
        logger.info("Started parent process [%d]", os.getpid())
        signal.signal(signal.SIGINT, self.handle_exit)
        signal.signal(signal.SIGTERM, self.handle_exit)
        signal.signal(signal.SIGHUP, self.handle_hup)
        for unsupported in (signal.SIGTTIN, signal.SIGTTOU):  # uvicorn's "one worker more or less"
            signal.signal(unsupported, self.handle_unsupported)
        for _ in range(self.config.workers):
            self.workers.append(self.start_worker())
        for listener in self.sockets:
            listener.listen(self.config.backlog)  # uvicorn binds; its servers would listen
            listener.setblocking(False)
            self.selector.register(listener, selectors.EVENT_READ)
        try:
            while not self.should_exit.is_set():
                for key, _ in self.selector.select(timeout=0 if self.pending else CHECK_SECONDS):
                    if key.data is None:
                        self.accept_all(key.fileobj)
                    else:
                        self.take_back(key.data)
                self.look_after_workers()
                self.dispatch()
                if self.pending:
                    self.wait_for_room()
        finally:
            for listener in self.sockets:
                listener.close()
            while self.pending:  # stopping: like those in the backlog, they are dropped
                self.pending.popleft().close()
            self.stop_workers()
            self.selector.close()
        logger.info("Stopping parent process [%d]", os.getpid())
        if self.exit_code:
            sys.exit(self.exit_code)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.should_exit.set()

    def handle_hup(self, sig: int, frame: FrameType | None) -> None:
        self.restart_requested = True

    def handle_unsupported(self, sig: int, frame: FrameType | None) -> None:
        logger.warning("%s ignored: set the number of workers with --workers", signal.Signals(sig).name)

    def start_worker(self) -> Worker:
        slot = self.free_slots.pop()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        base = SLOTS * slot
        self.counts[base + RECEIVED] = self.counts[base + OPEN] = self.counts[base + TICKED_AT] = 0
        process = self.context.Process(target=run_worker, args=(self.config, slot, theirs, self.counts))
        process.start()
        theirs.close()
        mine.setblocking(False)  # a stuck worker must not stop the supervisor from accepting
        worker = Worker(slot, process, mine)
        self.selector.register(mine, selectors.EVENT_READ, worker)  # connections it gives back
        logger.info("Started worker process [%d]", process.pid)
        return worker

    def accept_all(self, listener: socket.socket) -> None:
        while not self.pending:
            try:
                connection, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in RESOURCE_ERRORS:
                    raise
                logger.error("cannot accept connections for now: %s; trying again in a second", exc)
                time.sleep(1)  # the connections wait in the kernel's backlog meanwhile
                return
            self.pending.append(connection)
            self.dispatch()

    def take_back(self, worker: Worker) -> None:
        """Connections a stopping worker returns, unread; the end of its channel when it is done."""
        while True:
            try:
                data, fds, flags, _address = socket.recv_fds(worker.channel, FDS_PER_MESSAGE, FDS_PER_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds, flags = b"", [], 0
            if not data:
                worker.closed = True
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(worker.channel)
                return
            if flags & socket.MSG_CTRUNC:
                logger.error("%d connections given back were lost: no file descriptors left", len(data) - len(fds))
            self.pending.extend(socket.socket(fileno=fd) for fd in fds)

    def dispatch(self) -> None:
        """Hand the pending connections over, in order, for as long as a worker takes them."""
        while self.pending and self.hand_over(self.pending[0]):
            self.pending.popleft().close()  # the worker has its own descriptor now

    def hand_over(self, connection: socket.socket) -> bool:
        """Send a connection to the worker with the fewest open ones (counting those still in flight).

        False when none can take it now: all restarting, or too busy to read their channel.
        """
        for worker in sorted(self.rotated(), key=self.load):
            if worker.closed:
                continue
            try:
                socket.send_fds(worker.channel, [b"c"], [connection.fileno()])
            except BlockingIOError:
                continue
            except OSError as exc:  # it shut its channel: it is stopping (or broken: it is replaced)
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                    logger.error("worker [%d] could not take a connection: %s", worker.process.pid, exc)
                worker.closed = True
                continue
            worker.sent += 1
            return True
        return False

    def wait_for_room(self) -> None:
        """Wait up to 0.1 s for a worker's channel to take more (or for workers to be replaced)."""
        channels = [worker.channel for worker in self.workers if not worker.closed]
        if not channels:
            time.sleep(0.1)
            return
        with selectors.DefaultSelector() as waiting:
            for channel in channels:
                waiting.register(channel, selectors.EVENT_WRITE)
            waiting.select(timeout=0.1)

    def rotated(self) -> list[Worker]:
        """The workers starting one further each time, so that ties are shared out in turn."""
        self.next_choice = (self.next_choice + 1) % len(self.workers)
        return self.workers[self.next_choice :] + self.workers[: self.next_choice]

    def load(self, worker: Worker) -> int:
        base = SLOTS * worker.slot
        in_flight = worker.sent - self.counts[base + RECEIVED]
        return self.counts[base + OPEN] + max(in_flight, 0)

    def look_after_workers(self) -> None:
        """Replace the workers that stop or die; kill one that hangs; restart all on SIGHUP."""
        if self.restart_requested:
            self.restart_requested = False
            logger.info("Restarting the workers (SIGHUP)")
            for worker in self.workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGTERM)
        deadline = now_ms() - int(self.config.timeout_worker_healthcheck * 1000)
        for position, worker in enumerate(self.workers):
            if self.should_exit.is_set():
                return
            ticked_at = self.counts[SLOTS * worker.slot + TICKED_AT]
            if worker.process.is_alive():
                self.kill_if_hung(worker, deadline)
                # Stopping after it served (not an application that cannot start): its
                # replacement starts now, while it finishes its requests.
                if worker.closed and ticked_at and self.free_slots:
                    logger.info("worker process [%d] is finishing its requests; starting another", worker.process.pid)
                    self.draining.append(worker)
                    self.workers[position] = self.start_worker()
                continue
            # A worker that died before its first tick never served: the next would fail alike.
            self.failed_starts = self.failed_starts + 1 if ticked_at == 0 else 0
            if self.failed_starts >= MAX_FAILED_STARTS:
                logger.error("%d workers in a row could not start; stopping", self.failed_starts)
                self.exit_code = STARTUP_FAILURE
                self.should_exit.set()
                return
            self.retire(worker)
            self.workers[position] = self.start_worker()
        for worker in list(self.draining):
            if worker.process.is_alive():
                self.kill_if_hung(worker, deadline)
            else:
                self.draining.remove(worker)
                self.retire(worker)

    def kill_if_hung(self, worker: Worker, deadline: int) -> None:
        ticked_at = self.counts[SLOTS * worker.slot + TICKED_AT]
        if ticked_at and ticked_at < deadline:
            logger.error("worker process [%d] stopped answering; killing it", worker.process.pid)
            worker.process.kill()

    def retire(self, worker: Worker) -> None:
        """After a worker's end: take what it gave back before it went, and free its place."""
        logger.info("worker process [%d] ended (exit code %s)", worker.process.pid, worker.process.exitcode)
        self.take_back(worker)  # nothing more once its channel has ended
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(worker.channel)
        worker.channel.close()
        self.free_slots.append(worker.slot)

    def stop_workers(self) -> None:
        """Ask every worker to finish (uvicorn's graceful shutdown), then make sure they are gone."""
        everyone = self.workers + self.draining
        for worker in everyone:
            with contextlib.suppress(OSError):  # nothing comes back now: its give-backs fail at once
                worker.channel.shutdown(socket.SHUT_RD)
            if worker.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGTERM)
        grace = (self.config.timeout_graceful_shutdown or 30) + 5
        for worker in everyone:
            worker.process.join(timeout=grace)
            if worker.process.is_alive():
                logger.error("worker process [%d] did not stop in %d s; killing it", worker.process.pid, grace)
                worker.process.kill()
                worker.process.join()
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(worker.channel)
            worker.channel.close()


def main() -> None:
    # uvicorn's own command line and configuration; only the multi-worker supervisor is ours.
    # (The module, not the `uvicorn.main` attribute: uvicorn's package names its command that.)
    cli = importlib.import_module("uvicorn.main")
    cli.Multiprocess = BalancingSupervisor
    cli.main()


if __name__ == "__main__":
    main()
