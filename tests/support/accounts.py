"""Signed-in test clients for staff accounts (tests/conftest.py makes a viewer and an operator)."""

from django.contrib.auth.models import Group, User
from django.test import Client


def staff(username: str, group: str | None = None) -> Client:
    user = User.objects.create_user(username, password="x", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client
