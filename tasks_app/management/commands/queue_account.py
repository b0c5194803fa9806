import getpass
import os

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tasks_app.permissions import OPERATORS_GROUP, VIEWERS_GROUP, create_queue_groups

ROLES = {"operator": OPERATORS_GROUP, "viewer": VIEWERS_GROUP}
PASSWORD_VARIABLE = "DJANGO_QUEUE_ACCOUNT_PASSWORD"  # noqa: S105 - the name of a variable, not a password


class Command(BaseCommand):
    help = (
        "Make a staff account that watches the queues (viewer) or also acts on them (operator): creates the "
        "user if needed, asking for a password, and puts it in the matching group."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=sorted(ROLES), required=True)
        parser.add_argument(
            "--no-input",
            action="store_false",
            dest="interactive",
            help=f"do not prompt: a new account takes its password from {PASSWORD_VARIABLE}",
        )

    def handle(self, *args, username: str, role: str, interactive: bool, **options):
        user_model = get_user_model()
        user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
        created = user is None
        if created:
            # Asked before the transaction: SQLite's write lock, held while someone types, would
            # make every history write of the web and the workers wait and fail.
            user = user_model(**{user_model.USERNAME_FIELD: username})
            password = self.ask_password(user) if interactive else os.environ.get(PASSWORD_VARIABLE, "")
            if not password:
                raise CommandError(f"A new account needs a password: run interactively or set {PASSWORD_VARIABLE}.")
            self.validate(password, user)
            user.set_password(password)
        with transaction.atomic():
            create_queue_groups()
            user.is_staff = True
            user.save()
            user.groups.remove(*Group.objects.filter(name__in=ROLES.values()))
            user.groups.add(Group.objects.get(name=ROLES[role]))
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} {username}: staff, in the “{ROLES[role]}” group.")

    def ask_password(self, user) -> str:
        while True:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                self.stderr.write("The passwords differ; try again.")
                continue
            try:
                self.validate(password, user)
                return password
            except CommandError as exc:
                self.stderr.write(str(exc))

    def validate(self, password: str, user) -> None:
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
