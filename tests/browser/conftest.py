"""Headless Debian Chromium driven by Playwright, against the site under uvicorn in this process."""

import os

import pytest
from playwright.sync_api import sync_playwright

from tests.support.webserver import in_process_asgi_server

CHROMIUM = "/usr/bin/chromium"
# Flags for a closed network and a root user: no sandbox, no background calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


# Package scope: Playwright's sync API keeps an event loop running in the main thread while it
# is open, which would stop later tests (outside tests/browser) from running async code.
@pytest.fixture(scope="package")
def browser():
    # Playwright's sync API runs an event loop in this thread; Django would then refuse the
    # test database calls that fixtures make here, although nothing async touches them.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def live_server_url(transactional_db):
    """The site under the production server's ASGI path (event streams need it), on the test database."""
    with in_process_asgi_server() as url:
        yield url
