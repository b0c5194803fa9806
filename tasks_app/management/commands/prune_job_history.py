from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tasks_app.history import prune_history, sync_stale_rows


class Command(BaseCommand):
    help = "Delete job history rows of jobs that ended more than TASK_HISTORY_RETENTION_DAYS days ago."

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            default=settings.TASK_HISTORY_RETENTION_DAYS,
            help="keep this many days (default: TASK_HISTORY_RETENTION_DAYS, %(default)s)",
        )

    def handle(self, *args, **options):
        if options["days"] < 0:
            raise CommandError("--days must not be negative")
        # Rows of jobs gone from Redis without a word (lost data, an emptied queue) end first, so they can go.
        sync_stale_rows(timedelta(seconds=settings.TASK_ABANDONED_AFTER_SECONDS))
        deleted = prune_history(options["days"])
        self.stdout.write(f"Deleted {deleted} job history rows older than {options['days']} days.")
