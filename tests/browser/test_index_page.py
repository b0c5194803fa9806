"""The page in a real browser: submit with fetch, one row per job, updated in place."""

import pytest
from playwright.sync_api import expect

from tests.integration.conftest import real_redis, redis_port, start_worker  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_short_task_row_reaches_finished_once(live_server, page, start_worker):  # noqa: F811
    start_worker(burst=False, unit_seconds=2.5)
    page.goto(live_server.url + "/")

    page.get_by_role("button", name="Short").click()

    rows = page.locator("#tasks tbody tr")
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row.locator('[data-field="status"]')).to_have_text("started", timeout=10_000)
    expect(row.locator('[data-field="percent"]')).not_to_have_text("0%")  # the bar moves while it runs
    expect(row.locator('[data-field="status"]')).to_have_text("finished", timeout=10_000)
    expect(row.locator('[data-field="result"]')).to_have_text("true")
    expect(row.locator("progress")).to_have_attribute("value", "100")
    # Polls kept running for several seconds: still one row, never one per poll.
    page.wait_for_timeout(1500)
    expect(rows).to_have_count(1)

    # The job is remembered by this browser across a reload.
    task_id = row.get_attribute("data-task-id")
    page.reload()
    expect(page.locator(f'#tasks tbody tr[data-task-id="{task_id}"] [data-field="status"]')).to_have_text("finished")
    expect(rows).to_have_count(1)


def test_each_click_adds_exactly_one_row(live_server, page, start_worker):  # noqa: F811
    start_worker(burst=False, unit_seconds=0.3)
    page.goto(live_server.url + "/")
    for name in ("Short", "Medium", "Long"):
        page.get_by_role("button", name=name).click()
    rows = page.locator("#tasks tbody tr")
    expect(rows).to_have_count(3)
    for index in range(3):
        expect(rows.nth(index).locator('[data-field="status"]')).to_have_text("finished", timeout=15_000)
    expect(rows).to_have_count(3)
    # Newest first: Long was clicked last.
    expect(rows.first.locator('[data-field="type"]')).to_have_text("Long")

    page.get_by_role("button", name="Clear finished").click()
    expect(rows).to_have_count(0)
    page.reload()
    expect(rows).to_have_count(0)


def test_queue_down_is_shown_to_the_person(live_server, page, down_redis):
    page.goto(live_server.url + "/")
    page.get_by_role("button", name="Medium").click()
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text("The task queue is unavailable")
    expect(page.locator("#tasks tbody tr")).to_have_count(0)


def test_without_javascript_the_form_posts_and_the_job_page_refreshes(live_server, browser, start_worker):  # noqa: F811
    start_worker(burst=False, unit_seconds=0.5)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(live_server.url + "/")
        page.get_by_role("button", name="Short").click()
        expect(page).to_have_url(__import__("re").compile(r".*/jobs/[0-9a-f-]{36}$"))
        # The page reloads itself (meta refresh) until the job ends.
        expect(page.locator("#job-status")).to_have_text("finished", timeout=15_000)
    finally:
        context.close()
