"""The admin login is throttled (django-axes): repeated wrong passwords lock out the account and the address."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


def log_in(username: str, password: str, address: str) -> Client:
    client = Client(enforce_csrf_checks=False, REMOTE_ADDR=address)
    client.post(LOGIN, {"username": username, "password": password})
    return client


def logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


@pytest.fixture
def root() -> User:
    return User.objects.create_superuser("root", password="the-right-password")


def test_the_right_password_logs_in(root):
    assert logged_in(log_in("root", "the-right-password", "10.0.0.1"))


def test_thirty_wrong_passwords_then_the_right_one_does_not_log_in(root):
    for attempt in range(30):
        log_in("root", f"wrong-{attempt}", "10.0.0.1")
    client = Client(REMOTE_ADDR="10.0.0.1")
    response = client.post(LOGIN, {"username": "root", "password": "the-right-password"})
    assert response.status_code == 429
    assert not logged_in(client)


def test_an_account_is_locked_whatever_address_the_guesses_come_from(root):
    for attempt in range(30):
        log_in("root", f"wrong-{attempt}", f"10.0.1.{attempt}")
    assert not logged_in(log_in("root", "the-right-password", "10.0.2.1"))


def test_an_address_is_locked_whatever_accounts_it_guesses(root):
    for attempt in range(30):
        log_in(f"someone-{attempt}", "wrong", "10.0.3.1")
    assert not logged_in(log_in("root", "the-right-password", "10.0.3.1"))
    assert logged_in(log_in("root", "the-right-password", "10.0.3.2"))


def test_the_lockout_ends_after_the_cool_off(root, settings):
    for attempt in range(30):
        log_in("root", f"wrong-{attempt}", "10.0.4.1")
    settings.AXES_COOLOFF_TIME = timedelta(seconds=0)
    assert logged_in(log_in("root", "the-right-password", "10.0.4.1"))
