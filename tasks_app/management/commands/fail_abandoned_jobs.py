from django.core.management.base import BaseCommand

from tasks_app.abandoned import check, fail_abandoned_jobs


class Command(BaseCommand):
    help = (
        "Fail (or retry, per their policy) started jobs whose worker has died. Live workers do this every "
        "few seconds by themselves; this runs it once, for example when no worker is running."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="only list the jobs")

    def handle(self, *args, **options):
        found = fail_abandoned_jobs(dry_run=True) if options["dry_run"] else check()
        verb = "would become" if options["dry_run"] else "is now"
        for job in found:
            self.stdout.write(f"{job.job_id} ({job.queue}) {verb} {job.outcome}: {job.reason}")
        self.stdout.write(f"{len(found)} abandoned job(s).")
