"""RQ's scheduler as a supervised process of its own, so no worker's death can stall retries and delayed jobs."""

import logging
import signal
import socket
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from tasks_app import connections

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Put due retries and delayed jobs on their queues (RQ's scheduler) until SIGTERM or SIGINT."

    def add_arguments(self, parser):
        parser.add_argument(
            "--name",
            default=socket.gethostname(),
            help="the name RQ's scheduler locks are held under; restarted with the same name, it takes them "
            "back at once, while another name waits for them to expire (default: this host's name, %(default)s)",
        )

    def handle(self, *args, name: str, **options):
        stopping = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        queues = set(settings.TASK_QUEUES)
        scheduler = RQScheduler(queues, connection=connections.get_connection(), serializer=JSONSerializer, name=name)
        registered = False
        while not stopping.is_set():
            try:
                with connections.redis_outage_as_unavailable():
                    if not registered:
                        scheduler.register_birth()
                        registered = True
                    # Every tick, not RQ's work() every 120 s: a standby takes over as soon as the locks expire.
                    if scheduler.acquired_locks != queues:
                        scheduler.acquire_locks()
                    scheduler.heartbeat()
                    scheduler.enqueue_scheduled_jobs()
            except connections.QueueUnavailable as exc:  # Redis restarting or failing over: wait, as workers do
                logger.warning("scheduler %s cannot reach Redis: %s", name, exc)
                registered = False  # a Redis that comes back empty has forgotten it
            stopping.wait(scheduler.interval)
        try:
            with connections.redis_outage_as_unavailable():
                scheduler.stop()  # releases the locks, so another scheduler may take them at once
        except connections.QueueUnavailable as exc:
            logger.warning("scheduler %s stopped without releasing its locks: %s", name, exc)
