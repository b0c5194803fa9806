"""Confirmation emails: POST /tasks with type=confirmation_email, the job, the link and its page.

fakeredis and an in-process worker; mail goes to Django's test outbox, or to a real SMTP server on
loopback where the behaviour of SMTP itself (refusals, retries) is the point.
"""

import contextlib
import re
import time
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core import mail, signing
from django.test import Client
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from tasks_app import emails
from tests.support.processes import free_port
from tests.support.smtp import Mailbox, confirmation_link, smtp_server
from tests.support.workers import InProcessJSONWorker
from tests.test_settings import manage


@pytest.fixture
def site(settings):
    settings.SITE_URL = "https://tasks.example.org/"
    return settings


def request_email(address: str, **kwargs):
    return Client().post("/tasks", {"type": "confirmation_email", "email": address}, **kwargs)


def run_jobs(connection) -> None:
    InProcessJSONWorker(["high", "default", "low"], connection=connection).work(burst=True)


def status(task_id: str) -> dict:
    return Client().get(f"/tasks/{task_id}").json()["data"]


def link_path(link: str) -> str:
    return urlsplit(link).path


# --- The whole flow -----------------------------------------------------------------------------


def test_the_job_sends_a_link_that_confirms_the_address(fake_redis, site):
    response = request_email("Ada@Example.ORG")
    assert response.status_code == 202, response.content
    task_id = response.json()["data"]["task_id"]
    job = Job.fetch(task_id, connection=fake_redis, serializer=JSONSerializer)
    assert job.func_name == "tasks_app.tasks.send_confirmation_email"
    assert job.args == ["Ada@example.org"]  # the domain is case-insensitive, the local part is not
    assert mail.outbox == []  # the request never waits for the mail server

    run_jobs(fake_redis)

    final = status(task_id)
    assert final["task_status"] == "finished", final
    result = final["task_result"]
    assert set(result) == {"email", "sent_at", "link_expires_at"}  # never the link itself
    assert result["email"] == "Ada@example.org"
    (message,) = mail.outbox
    assert message.to == ["Ada@example.org"]
    assert message.subject == "Confirm your email address"
    assert message.from_email == "taskqueue <noreply@localhost>"
    link = re.search(r"https://tasks\.example\.org/confirm/\S+", message.body).group(0)
    assert "(it works for 2 days)" in message.body

    job_page = Client().get(f"/jobs/{task_id}").content.decode()
    assert "Sent to <strong>Ada@example.org</strong>" in job_page
    assert "Not confirmed yet" in job_page

    page = Client().get(link_path(link))  # opening the link shows a button and confirms nothing
    assert page.status_code == 200
    assert 'data-state="ready"' in page.content.decode()
    assert "no-cache" in page["Cache-Control"]
    assert "Not confirmed yet" in Client().get(f"/jobs/{task_id}").content.decode()

    page = Client().post(link_path(link), follow=True)  # the button
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-state="confirmed"' in html
    assert "<strong>Ada@example.org</strong> is confirmed" in html

    job_page = Client().get(f"/jobs/{task_id}").content.decode()
    assert 'The address is <strong class="status-finished">confirmed</strong>' in job_page


def test_opening_a_link_confirms_nothing(fake_redis, site):
    """Mail scanners and link previews fetch links too: only the page's button confirms."""
    path = link_path(emails.confirmation_link("scanned@example.org"))
    assert Client().get(path).status_code == 200
    assert Client().head(path).status_code == 200
    assert fake_redis.hlen(emails.CONFIRMED_KEY) == 0


def test_confirming_twice_keeps_the_first_confirmation(fake_redis, site):
    path = link_path(emails.confirmation_link("twice@example.org"))
    first = Client().post(path, follow=True).content.decode()
    time.sleep(0.01)  # a later second, in microseconds at least
    second = Client().post(path, follow=True).content.decode()
    since = re.compile(r'\(since <time datetime="([^"]+)">')
    assert since.search(first).group(1) == since.search(second).group(1)


def test_an_expired_link_says_so_and_offers_a_new_one(fake_redis, site, monkeypatch):
    three_days_ago = int(time.time()) - 3 * 24 * 3600
    # A scoped patch: monkeypatch.undo() would also undo fake_redis and reach for a real Redis.
    with monkeypatch.context() as clock:
        clock.setattr(signing.TimestampSigner, "timestamp", lambda self: signing.b62_encode(three_days_ago))
        path = link_path(emails.confirmation_link("late@example.org"))

    response = Client().get(path)
    assert response.status_code == 410
    html = response.content.decode()
    assert 'data-state="expired"' in html
    assert '<input type="hidden" name="type" value="confirmation_email">' in html
    assert 'value="late@example.org"' in html  # one click sends a new link
    assert emails.confirmed_at("late@example.org") is None


def altered(token: str) -> str:
    """The same token with its signature's last characters changed."""
    return token[:-3] + ("bbb" if token.endswith("aaa") else "aaa")


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda: "not-a-token", id="garbage"),
        pytest.param(lambda: signing.dumps({"email": "x@example.org"}), id="signed for something else"),
        pytest.param(lambda: altered(emails.make_token("victim@example.org")), id="altered"),
    ],
)
def test_an_invalid_link_says_so(fake_redis, site, make_token):
    token = make_token()
    for response in (Client().get(f"/confirm/{token}"), Client().post(f"/confirm/{token}")):
        assert response.status_code == 400
        assert 'data-state="invalid"' in response.content.decode()
    assert fake_redis.hlen(emails.CONFIRMED_KEY) == 0


def test_confirming_with_redis_down_answers_503(down_redis, site):
    response = Client().get(link_path(emails.confirmation_link("a@example.org")))
    assert response.status_code == 503
    assert "The task queue is unavailable" in response.content.decode()


def test_the_email_kind_has_its_own_policy(fake_redis):
    task_id = request_email("a@example.org").json()["data"]["task_id"]
    job = Job.fetch(task_id, connection=fake_redis, serializer=JSONSerializer)
    policy = settings.TASK_POLICIES["confirmation_email"]
    assert job.meta["kind"] == "confirmation_email"
    assert job.timeout == policy["timeout"]
    assert (job.retries_left, job.retry_intervals) == (policy["max_retries"], policy["retry_intervals"])


# --- Bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"data": {"type": "confirmation_email"}}, id="missing"),
        pytest.param({"data": {"type": "confirmation_email", "email": ""}}, id="empty"),
        pytest.param({"data": {"type": "confirmation_email", "email": "not-an-address"}}, id="no @"),
        pytest.param({"data": {"type": "confirmation_email", "email": "a@b@example.org"}}, id="two @"),
        pytest.param({"data": {"type": "confirmation_email", "email": "a@"}}, id="no domain"),
        pytest.param({"data": {"type": "confirmation_email", "email": "a b@example.org"}}, id="space"),
        pytest.param({"data": {"type": "confirmation_email", "email": "x" * 250 + "@example.org"}}, id="too long"),
        pytest.param(
            {"data": {"type": "confirmation_email", "email": "a@example.org\nBcc: b@example.org"}},
            id="header injection",
        ),
        pytest.param(
            {"data": {"type": "confirmation_email", "email": ["a@example.org"]}, "content_type": "application/json"},
            id="JSON list",
        ),
        pytest.param(
            {"data": {"type": "confirmation_email", "email": '"\x01"@example.org'}, "content_type": "application/json"},
            id="control character in a quoted local part",
        ),
    ],
)
def test_a_bad_address_is_refused_with_400(fake_redis, kwargs):
    response = Client().post("/tasks", **kwargs)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["status"] == "error"
    assert body["errors"]["email"]
    assert Queue("default", connection=fake_redis).count == 0


def test_json_and_urlencoded_requests_work_too(fake_redis):
    as_json = Client().post(
        "/tasks", {"type": "confirmation_email", "email": "a@example.org"}, content_type="application/json"
    )
    as_form = Client().post(
        "/tasks", "type=confirmation_email&email=b%40example.org", content_type="application/x-www-form-urlencoded"
    )
    assert (as_json.status_code, as_form.status_code) == (202, 202)


def test_the_page_has_an_email_form_that_works_without_javascript(fake_redis, site):
    client = Client(enforce_csrf_checks=True)
    html = client.get("/").content.decode()
    token = client.cookies["csrftoken"].value
    assert re.search(r'<form method="post" action="/" id="email-form"', html)
    assert 'type="email" name="email"' in html

    response = client.post(
        "/", {"type": "confirmation_email", "email": "page@example.org", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 303
    assert re.fullmatch(r"/jobs/[0-9a-f-]{36}\?token=\S+", response["Location"])
    run_jobs(fake_redis)
    assert 'id="job-status">finished<' in client.get(response["Location"]).content.decode()
    assert mail.outbox[0].to == ["page@example.org"]


def test_the_page_shows_an_invalid_address(fake_redis):
    client = Client(enforce_csrf_checks=True)
    token = client.get("/").cookies["csrftoken"].value
    response = client.post("/", {"type": "confirmation_email", "email": "nobody", "csrfmiddlewaretoken": token})
    assert response.status_code == 400
    html = response.content.decode()
    email_form = html[html.index('id="email-form"') :]
    assert "Email address: Enter a valid email address." in email_form
    assert 'value="nobody"' in email_form  # what the person typed stays, to be corrected


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("a@exam\u2028ple.org", id="line separator U+2028"),
        pytest.param("a@\u202eelpmaxe.org", id="right-to-left override U+202E"),
        pytest.param("=?utf-8?q?a=0D=0ABcc=3A_evil=40attacker.org?=@example.org", id="encoded word with a header"),
        pytest.param("=?utf-8?b?ZXZpbA==?=@example.org", id="encoded word mailed as evil@"),
        pytest.param("a@\uff45xample.org", id="fullwidth letter IDNA maps to e"),
        pytest.param("a@stra\u00dfe.example", id="sharp s IDNA maps to ss"),
    ],
)
def test_an_address_that_would_not_be_mailed_as_shown_is_refused(fake_redis, address):
    response = Client().post(
        "/tasks", {"type": "confirmation_email", "email": address}, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["email"] == ["Enter an email address that can be sent to as written."]
    assert Queue("default", connection=fake_redis).count == 0


def test_the_address_recorded_is_the_one_mailed(fake_redis, site, smtp):
    mailbox = Mailbox()
    smtp(mailbox)
    response = request_email("Ada@B\u00fccher.example")
    assert response.status_code == 202, response.content

    run_jobs(fake_redis)

    recorded = status(response.json()["data"]["task_id"])["task_result"]["email"]
    assert recorded == "Ada@b\u00fccher.example"
    assert mailbox.recipients == ["Ada@xn--bcher-kva.example"]  # the same domain, in its ASCII form
    local, _, domain = recorded.partition("@")
    assert mailbox.recipients == [f"{local}@{domain.encode('idna').decode()}"]


def test_an_address_gets_at_most_the_configured_emails(fake_redis, settings):
    settings.CONFIRMATION_EMAILS_PER_ADDRESS = "3/h"
    assert [request_email(address).status_code for address in ["a@example.org"] * 3] == [202] * 3

    refused = request_email("A@EXAMPLE.org")  # the same mailbox, spelled otherwise
    assert refused.status_code == 429, refused.content
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert "Too many confirmation emails to A@example.org: the limit is 3/h an address." in refused.json()["message"]
    assert Queue("default", connection=fake_redis).count == 3
    assert request_email("b@example.org").status_code == 202


# --- Sending: once per job, retried only when the server did not take the message ---------------


@pytest.fixture
def smtp(settings):
    """Django's SMTP backend; calling the fixture starts a real server on loopback for a mailbox."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    with contextlib.ExitStack() as servers:

        def serve(mailbox: Mailbox) -> None:
            settings.EMAIL_PORT = servers.enter_context(smtp_server(mailbox))

        yield serve


def test_a_retried_job_never_sends_twice(fake_redis, site):
    first = emails.send_confirmation("once@example.org", job_id="job-1", connection=fake_redis)
    again = emails.send_confirmation("once@example.org", job_id="job-1", connection=fake_redis)
    assert again == first
    assert len(mail.outbox) == 1
    emails.send_confirmation("once@example.org", job_id="job-2", connection=fake_redis)
    assert len(mail.outbox) == 2  # another request is another message


def test_a_refusing_server_leaves_the_message_to_the_retry(fake_redis, site, smtp):
    import smtplib

    mailbox = Mailbox(refuse_first=1)
    smtp(mailbox)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        emails.send_confirmation("retry@example.org", job_id="job-1", connection=fake_redis)
    assert refused.value.smtp_code == 451
    assert fake_redis.get(emails.SENT_MARK_KEY.format(job_id="job-1")) is None

    emails.send_confirmation("retry@example.org", job_id="job-1", connection=fake_redis)
    emails.send_confirmation("retry@example.org", job_id="job-1", connection=fake_redis)
    assert mailbox.attempts == 2
    (message,) = mailbox.messages
    assert message["To"] == "retry@example.org"
    assert confirmation_link(message).startswith("https://tasks.example.org/confirm/")


def test_a_server_that_is_down_is_retried_later(fake_redis, site, smtp, settings):
    settings.EMAIL_PORT = free_port()  # nothing listens there
    with pytest.raises(ConnectionRefusedError):
        emails.send_confirmation("later@example.org", job_id="job-1", connection=fake_redis)
    mailbox = Mailbox()
    smtp(mailbox)
    emails.send_confirmation("later@example.org", job_id="job-1", connection=fake_redis)
    assert len(mailbox.messages) == 1


def test_an_attempt_that_died_while_sending_is_not_repeated(fake_redis, site):
    """If a worker was killed mid-send, the message may have gone: the job fails rather than risk a copy."""
    fake_redis.set(emails.SENT_MARK_KEY.format(job_id="job-1"), emails.SENDING)
    with pytest.raises(emails.DeliveryUncertain):
        emails.send_confirmation("maybe@example.org", job_id="job-1", connection=fake_redis)
    assert mail.outbox == []


# --- Settings -----------------------------------------------------------------------------------


def email_settings(**env: str) -> list[str]:
    code = "from django.conf import settings as s; print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.SITE_URL)"
    result = manage("shell", "-c", code, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1].split()


def test_email_goes_to_the_console_in_development_and_to_smtp_once_configured():
    production = {"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "x" * 50, "DJANGO_ALLOWED_HOSTS": "example.org"}
    assert email_settings(DJANGO_DEBUG="true", EMAIL_HOST="")[0] == "django.core.mail.backends.console.EmailBackend"
    assert email_settings(DJANGO_DEBUG="true", EMAIL_HOST="mail.example.org", EMAIL_PORT="2525")[:3] == [
        "django.core.mail.backends.smtp.EmailBackend",
        "mail.example.org",
        "2525",
    ]
    assert email_settings(**production, EMAIL_HOST="")[0] == "django.core.mail.backends.smtp.EmailBackend"
    assert email_settings(SITE_URL="https://tasks.example.org")[3] == "https://tasks.example.org/"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SITE_URL": "tasks.example.org"}, """Environment variable "SITE_URL" invalid: ['Not a valid URL.']"""),
        ({"EMAIL_USE_TLS": "true", "EMAIL_USE_SSL": "true"}, "EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive"),
        (
            {"THUMBNAIL_SIZES": "128,big"},
            """Environment variable "THUMBNAIL_SIZES" invalid: {1: ['Not a valid integer.']}""",
        ),
        ({"THUMBNAIL_SIZES": "0,128"}, "THUMBNAIL_SIZES must list whole numbers from 16 to 4096"),
        (
            {"DJANGO_STORAGE_OPTIONS": "[1]"},
            """Environment variable "DJANGO_STORAGE_OPTIONS" invalid: ['Must be a JSON object.']""",
        ),
    ],
)
def test_bad_settings_are_refused_by_name(env, message):
    result = manage("check", **env)
    assert result.returncode != 0
    assert message in result.stderr
