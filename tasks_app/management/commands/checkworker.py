"""The worker containers' healthcheck: a worker here has a live key in Redis and a running process."""

import os
import socket

from django.core.management.base import BaseCommand, CommandError

from tasks_app import connections, health


class Command(BaseCommand):
    help = "Exit 0 if an RQ worker on this host has a live heartbeat in Redis and is running; 1 otherwise."

    def handle(self, *args, **options):
        hostname = socket.gethostname()
        try:
            workers = health.live_workers(hostname=hostname)
        except connections.QueueUnavailable as exc:
            raise CommandError(f"Redis cannot be reached: {exc}") from None
        running = [worker for worker in workers if process_is_running(worker.pid)]
        if not running:
            raise CommandError(f"no live worker on {hostname}")
        for worker in running:
            self.stdout.write(f"{worker.name} pid {worker.pid} alive, last heartbeat {worker.last_heartbeat}")


def process_is_running(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, as another user
        return True
    return True
