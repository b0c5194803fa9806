from django.core.management.base import BaseCommand

from tasks_app.permissions import GROUPS, create_queue_groups


class Command(BaseCommand):
    help = (
        'Create the "Queue operators" (look and act) and "Queue viewers" (look only) groups, or give them '
        "the permissions they lack. `migrate` does this too."
    )

    def handle(self, *args, **options):
        missing = create_queue_groups()
        for name, permissions in GROUPS.items():
            self.stdout.write(f"{name}: {', '.join(permissions)}")
        if missing:
            self.stderr.write(f"Not created yet (run migrate first): {', '.join(missing)}")
