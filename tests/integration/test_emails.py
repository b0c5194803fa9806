"""Confirmation emails sent by a real `manage.py rqworker` to a real SMTP server on loopback."""

import contextlib
import json
import urllib.request

import pytest

from tests.support.http import request, task_status
from tests.support.processes import wait_until
from tests.support.smtp import Mailbox, confirmation_link, smtp_server


@pytest.fixture
def mail_server():
    """Start SMTP servers (aiosmtpd) on free ports: mail_server(mailbox) returns the port."""
    with contextlib.ExitStack() as servers:
        yield lambda mailbox: servers.enter_context(smtp_server(mailbox))


def smtp_env(port: int, site_url: str) -> dict[str, str]:
    """How a production worker is configured: SMTP from the environment, the site's public address."""
    return {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(port), "EMAIL_TIMEOUT": "5", "SITE_URL": site_url}


def request_email(base_url: str, address: str) -> str:
    reply = request(f"{base_url}/tasks", "POST", {"type": "confirmation_email", "email": address})
    assert reply.status == 202, reply.body
    return reply.body["data"]["task_id"]


def read_page(url: str, method: str = "GET") -> tuple[int, str]:
    try:
        request = urllib.request.Request(url, data=b"" if method == "POST" else None, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_email_arrives_and_its_link_confirms_the_address(live_server, start_worker, mail_server):
    mailbox = Mailbox()
    port = mail_server(mailbox)
    task_id = request_email(live_server.url, "ada@example.org")
    assert start_worker(**smtp_env(port, live_server.url)).wait(timeout=60) == 0

    data = task_status(live_server.url, task_id)
    assert data["task_status"] == "finished", data
    assert data["task_result"]["email"] == "ada@example.org"
    (message,) = mailbox.messages
    assert message["To"] == "ada@example.org"
    assert message["Subject"] == "Confirm your email address"
    assert message["Auto-Submitted"] == "auto-generated"
    link = confirmation_link(message)
    assert link.startswith(f"{live_server.url}/confirm/")
    assert link not in json.dumps(data)  # the status API never shows the link

    status, html = read_page(f"{live_server.url}/jobs/{task_id}")
    assert status == 200 and "Not confirmed yet" in html

    status, html = read_page(link)
    assert status == 200 and 'data-state="ready"' in html  # opening the link confirms nothing yet

    status, html = read_page(link, method="POST")  # the page's button; the answer leads back to the link
    assert status == 200
    assert "<strong>ada@example.org</strong> is confirmed" in html

    status, html = read_page(f"{live_server.url}/jobs/{task_id}")
    assert 'The address is <strong class="status-finished">confirmed</strong>' in html


def test_a_refusal_is_retried_with_back_off_and_one_message_arrives(
    live_server, start_scheduler, start_worker, mail_server, settings
):
    settings.TASK_POLICIES = {
        **settings.TASK_POLICIES,
        "confirmation_email": {"timeout": 30, "max_retries": 3, "retry_intervals": [2]},
    }
    mailbox = Mailbox(refuse_first=1)  # 451: the server is busy, try again later
    port = mail_server(mailbox)
    task_id = request_email(live_server.url, "grace@example.org")
    start_scheduler("tests")
    start_worker(burst=False, **smtp_env(port, live_server.url))

    final = wait_until(
        lambda: (data := task_status(live_server.url, task_id))["task_status"] == "finished" and data,
        30,
        "the retry to succeed",
    )
    assert (final["attempt"], final["max_attempts"]) == (2, 4)
    assert mailbox.attempts == 2
    # The policy's wait between attempts (RQ's scheduler counts in whole seconds, so 2 s is 1 to 2 s).
    assert mailbox.attempted_at[1] - mailbox.attempted_at[0] >= 1
    (message,) = mailbox.messages  # exactly one message delivered
    assert message["To"] == "grace@example.org"
    status, html = read_page(confirmation_link(message), method="POST")
    assert status == 200 and "is confirmed" in html
