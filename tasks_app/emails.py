"""Confirmation emails: signed expiring links, sent at most once per job, confirmations kept in Redis."""

import json
import logging
import smtplib
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin

import redis
from django.conf import settings
from django.core import signing
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.timesince import timeuntil

from tasks_app.connections import get_connection, redis_outage_as_unavailable
from tasks_app.status import iso_utc

logger = logging.getLogger(__name__)

SALT = "tasks_app.emails.confirmation"
# Hash: confirmed address → when it was first confirmed (ISO 8601, UTC). Kept without expiry.
CONFIRMED_KEY = "taskqueue:confirmed-emails"
# Per job: "sending" while a message is handed to the mail server, then the job's result (JSON).
SENT_MARK_KEY = "taskqueue:confirmation-sent:{job_id}"
SENDING = b"sending"
# Longer than any job and its retries live, so a late retry still finds the mark.
SENT_MARK_TTL_SECONDS = 8 * 24 * 3600


class InvalidConfirmation(Exception):
    """The link was not made by this site (or was altered)."""


class ConfirmationExpired(Exception):
    """The link was made by this site but is older than CONFIRMATION_MAX_AGE_SECONDS."""

    def __init__(self, address: str):
        super().__init__(f"The confirmation link for {address} has expired.")
        self.address = address


class DeliveryUncertain(Exception):
    """An earlier attempt stopped while handing the message over; sending again could duplicate it."""


def make_token(address: str) -> str:
    """Sign an address with the current time; read_token() gives it back until it expires."""
    return signing.TimestampSigner(salt=SALT).sign_object({"email": address})


def read_token(token: str) -> str:
    """Return the address a confirmation token was made for, or raise why it cannot be used."""
    signer = signing.TimestampSigner(salt=SALT)
    try:
        payload = signer.unsign_object(token, max_age=settings.CONFIRMATION_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        # Genuine but old: say whose it was, so the page can offer to send a new link.
        raise ConfirmationExpired(signer.unsign_object(token)["email"]) from None
    except (signing.BadSignature, ValueError):
        raise InvalidConfirmation(token) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("email"), str):
        raise InvalidConfirmation(token)
    return payload["email"]


def confirmation_link(address: str) -> str:
    """The absolute link that confirms an address, on the site's public address (SITE_URL)."""
    return urljoin(settings.SITE_URL, reverse("tasks_app:confirm_email", args=[make_token(address)]))


def send_confirmation(address: str, *, job_id: str, connection: redis.Redis) -> dict:
    """Send the confirmation email of a job once: a retry after a delivered message sends nothing."""
    expires_at = datetime.now(UTC) + timedelta(seconds=settings.CONFIRMATION_MAX_AGE_SECONDS)
    message = message_for(address, expires_at)
    message.message()  # a message that cannot be built fails here, before anything is marked
    key = SENT_MARK_KEY.format(job_id=job_id)
    if not connection.set(key, SENDING, nx=True, ex=SENT_MARK_TTL_SECONDS):
        mark = connection.get(key)
        if mark == SENDING:
            raise DeliveryUncertain(
                "An earlier attempt stopped while handing the message to the mail server; "
                "it is not sent again, so that the address never receives it twice."
            )
        logger.info("job_id=%s confirmation email already sent; not sending again", job_id)
        return json.loads(mark)
    try:
        message.send()
    except (smtplib.SMTPException, OSError):
        connection.delete(key)  # not accepted by the server: a retry may send it
        raise
    result = {"email": address, "sent_at": iso_utc(datetime.now(UTC)), "link_expires_at": iso_utc(expires_at)}
    logger.info("job_id=%s confirmation email sent", job_id)
    try:
        connection.set(key, json.dumps(result), ex=SENT_MARK_TTL_SECONDS)
    except redis.RedisError as exc:  # the message went: the job succeeds, and the mark stays "sending"
        logger.warning("job_id=%s confirmation email sent but not marked: %s", job_id, exc)
    return result


def message_for(address: str, expires_at: datetime) -> EmailMessage:
    valid_for = timedelta(seconds=settings.CONFIRMATION_MAX_AGE_SECONDS)
    context = {
        "email": address,
        "link": confirmation_link(address),
        "valid_for": timeuntil(expires_at, now=expires_at - valid_for).replace("\xa0", " "),  # "2 days"
    }
    subject = render_to_string("tasks_app/emails/confirmation_subject.txt", context).strip()
    body = render_to_string("tasks_app/emails/confirmation_body.txt", context)
    return EmailMessage(subject, body, to=[address], headers={"Auto-Submitted": "auto-generated"})


def confirm(token: str) -> None:
    """Record the confirmation a link carries; opening a link twice keeps the first time."""
    address = read_token(token)
    with redis_outage_as_unavailable():
        get_connection().hsetnx(CONFIRMED_KEY, address, iso_utc(datetime.now(UTC)))


def read_confirmation(token: str) -> tuple[str, str | None]:
    """The address a confirmation link is for, and when it was confirmed (None if not yet)."""
    address = read_token(token)
    return address, confirmed_at(address)


def confirmed_at(address: str) -> str | None:
    with redis_outage_as_unavailable():
        value = get_connection().hget(CONFIRMED_KEY, address)
    return value.decode() if value is not None else None
