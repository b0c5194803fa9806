"""A real SMTP server on a free loopback port (aiosmtpd), keeping every message it accepts."""

import contextlib
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.support.processes import free_port


class Mailbox:
    """An aiosmtpd handler: refuses the first `refuse_first` messages with a 451, accepts the rest."""

    def __init__(self, refuse_first: int = 0):
        self.messages: list[EmailMessage] = []
        self.recipients: list[str] = []  # the envelope's RCPT TO addresses of accepted messages
        self.attempts = 0
        self.attempted_at: list[float] = []  # time.monotonic() of each message handed over
        self.refusals_left = refuse_first
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.attempts += 1
            self.attempted_at.append(time.monotonic())
            if self.refusals_left:
                self.refusals_left -= 1
                return "451 4.3.0 Temporary failure, try again later"
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
            self.recipients.extend(envelope.rcpt_tos)
        return "250 2.0.0 Message accepted for delivery"


@contextlib.contextmanager
def smtp_server(mailbox: Mailbox) -> Iterator[int]:
    """Run an SMTP server for `mailbox` in a thread; yield its port."""
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def confirmation_link(message: EmailMessage) -> str:
    """The one link in a confirmation email's text."""
    links = [word for word in message.get_content().split() if word.startswith(("http://", "https://"))]
    assert len(links) == 1, message.get_content()
    return links[0]
