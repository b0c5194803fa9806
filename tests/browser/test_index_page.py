"""The page in a real browser: submit with fetch, one row per job, updated in place."""

import pytest
from playwright.sync_api import expect

from tests.integration.conftest import real_redis, redis_port, start_worker  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_short_task_row_reaches_finished_once(live_server_url, page, start_worker):  # noqa: F811
    start_worker(burst=False, unit_seconds=2.5)
    page.goto(live_server_url + "/")

    page.get_by_role("button", name="Short").click()

    rows = page.locator("#tasks tbody tr")
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row.locator('[data-field="status"]')).to_have_text("started", timeout=10_000)
    expect(row.locator('[data-field="percent"]')).not_to_have_text("0%")  # the bar moves while it runs
    expect(row.locator('[data-field="status"]')).to_have_text("finished", timeout=10_000)
    expect(row.locator('[data-field="result"]')).to_have_text("done")
    expect(row.locator("progress")).to_have_attribute("value", "100")
    # Polls kept running for several seconds: still one row, never one per poll.
    page.wait_for_timeout(1500)
    expect(rows).to_have_count(1)

    # The job is remembered by this browser across a reload.
    task_id = row.get_attribute("data-task-id")
    page.reload()
    expect(page.locator(f'#tasks tbody tr[data-task-id="{task_id}"] [data-field="status"]')).to_have_text("finished")
    expect(rows).to_have_count(1)


def test_each_click_adds_exactly_one_row(live_server_url, page, start_worker):  # noqa: F811
    start_worker(burst=False, unit_seconds=0.3)
    page.goto(live_server_url + "/")
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


def test_queue_down_is_shown_to_the_person(live_server_url, page, down_redis):
    page.goto(live_server_url + "/")
    page.get_by_role("button", name="Medium").click()
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text("The task queue is unavailable")
    expect(page.locator("#tasks tbody tr")).to_have_count(0)


def test_without_javascript_the_form_posts_and_the_job_page_refreshes(live_server_url, browser, start_worker):  # noqa: F811
    start_worker(burst=False, unit_seconds=0.5)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(live_server_url + "/")
        page.get_by_role("button", name="Short").click()
        expect(page).to_have_url(__import__("re").compile(r".*/jobs/[0-9a-f-]{36}\?token=[^&]+$"))
        # The page reloads itself (meta refresh) until the job ends.
        expect(page.locator("#job-status")).to_have_text("finished", timeout=15_000)
    finally:
        context.close()


def test_rows_follow_pushed_events_alone_and_cancel_works(live_server_url, page, start_worker):  # noqa: F811
    polls = []

    def refuse_polling(route):
        polls.append(route.request.url)
        route.abort()

    # Any GET /tasks/<id> poll fails the test: updates must arrive through the event stream.
    page.route(__import__("re").compile(r".*/tasks/[0-9a-f-]{36}$"), refuse_polling)
    start_worker(burst=False, unit_seconds=1)
    page.goto(live_server_url + "/")

    page.get_by_role("button", name="Short").click()
    page.get_by_role("button", name="Long").click()
    rows = page.locator("#tasks tbody tr")
    expect(rows).to_have_count(2)
    long_row, short_row = rows.nth(0), rows.nth(1)

    # One worker: Long waits behind Short, so cancelling it stops it from ever running.
    long_row.get_by_role("button", name="Cancel").click()
    expect(long_row.locator('[data-field="status"]')).to_have_text("canceled")
    expect(long_row.get_by_role("button", name="Cancel")).to_be_hidden()
    expect(short_row.locator('[data-field="status"]')).to_have_text("finished", timeout=15_000)
    expect(short_row.locator('[data-field="result"]')).to_have_text("done")
    assert polls == []


def test_on_a_phone_a_running_task_says_stop_and_asks_before_stopping(live_server_url, browser, start_worker):  # noqa: F811
    start_worker(burst=False, unit_seconds=30)
    page = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    page.set_default_timeout(15_000)
    page.goto(live_server_url + "/")
    page.get_by_role("button", name="Short").click()
    row = page.locator(f'tr[data-task-id="{page.locator("#tasks tbody tr").first.get_attribute("data-task-id")}"]')
    expect(row.locator('[data-field="status"]')).to_have_text("started", timeout=10_000)
    page.get_by_role("button", name="Long").click()  # waits behind Short: its button says Cancel
    expect(page.locator("#tasks tbody tr")).to_have_count(2)
    waiting = page.locator("#tasks tbody tr").first
    expect(waiting.get_by_role("button", name="Cancel")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
    for button in (waiting.get_by_role("button", name="Cancel"), row.get_by_role("button", name="Stop")):
        box = button.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390

    posts = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Stop").click()
    expect(row.get_by_role("button", name="Stop")).to_be_enabled()
    assert posts == []  # declined: nothing was sent
    waiting.get_by_role("button", name="Cancel").click()  # or it starts next, and the worker waits it out
    expect(waiting.locator('[data-field="status"]')).to_have_text("canceled")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Stop").click()
    expect(row.locator('[data-field="status"]')).to_have_text("stopped", timeout=10_000)
    expect(row.locator('[data-field="result"]')).to_have_text("Stopped on request while running.")


def test_delay_and_priority_from_the_form(live_server_url, page, real_redis):  # noqa: F811
    page.goto(live_server_url + "/")
    page.get_by_label("Start after (seconds)").fill("60")
    page.get_by_label("Priority").select_option("high")
    page.get_by_role("button", name="Medium").click()
    row = page.locator("#tasks tbody tr").first
    expect(row.locator('[data-field="status"]')).to_have_text("scheduled")
    expect(row.locator('[data-field="result"]')).to_contain_text("starts")
    delay = page.get_by_label("Start after (seconds)")
    delay.fill("-3")
    page.get_by_role("button", name="Short").click()  # the browser's own validation stops this
    assert delay.evaluate("input => input.validity.valid") is False
    delay.fill("1e3")  # a number to the browser, not a whole number of seconds to the API
    page.get_by_role("button", name="Short").click()
    expect(page.locator("#notice")).to_contain_text("The delay must be a whole number of seconds.")
    expect(page.locator("#tasks tbody tr")).to_have_count(1)


def test_rows_fall_back_to_polling_when_streaming_is_unavailable(live_server_url, page, start_worker):  # noqa: F811
    streams = []

    def refuse_stream(route):
        streams.append(route.request.url)
        route.fulfill(status=503, content_type="application/json", body='{"status": "error", "message": "down"}')

    page.route(__import__("re").compile(r".*/tasks/events\?.*"), refuse_stream)
    start_worker(burst=False, unit_seconds=0.5)
    page.goto(live_server_url + "/")
    page.get_by_role("button", name="Short").click()
    row = page.locator("#tasks tbody tr").first
    expect(row.locator('[data-field="status"]')).to_have_text("finished", timeout=15_000)
    assert streams, "the page should have tried the event stream first"


def test_a_refused_submission_stays_explained_while_other_rows_update(live_server_url, page, start_worker):  # noqa: F811
    start_worker(burst=False, unit_seconds=1)
    page.goto(live_server_url + "/")
    page.get_by_role("button", name="Long").click()  # runs about 3 s, sending progress as it goes
    rows = page.locator("#tasks tbody tr")
    expect(rows.first.locator('[data-field="status"]')).to_have_text("started", timeout=10_000)

    refusal = '{"status": "error", "message": "Too many new tasks: retry in 9 s."}'
    page.route("**/tasks", lambda route: route.fulfill(status=429, body=refusal, content_type="application/json"))
    page.get_by_role("button", name="Short").click()
    notice = page.locator("#notice")
    expect(notice).to_contain_text("Too many new tasks")
    expect(rows.first.locator('[data-field="status"]')).to_have_text("finished", timeout=15_000)
    expect(notice).to_be_visible()  # the row's updates did not wipe it
    expect(notice).to_contain_text("Too many new tasks")


def test_a_reload_follows_every_remembered_row_on_one_stream(live_server_url, page, start_worker):  # noqa: F811
    start_worker(burst=False, unit_seconds=5)  # long enough that the rows are still running
    page.goto(live_server_url + "/")
    page.get_by_role("button", name="Short").click()
    page.get_by_role("button", name="Medium").click()
    # This page's own stream for the three rows opens first, lest the count below include it.
    with page.expect_request(lambda request: "/tasks/events" in request.url and request.url.count("id=") == 3):
        page.get_by_role("button", name="Long").click()
    expect(page.locator("#tasks tbody tr")).to_have_count(3)

    streams = []
    page.on("request", lambda request: "/tasks/events" in request.url and streams.append(request.url))
    page.reload()
    expect(page.locator("#tasks tbody tr")).to_have_count(3)
    expect(page.locator('#tasks tbody tr [data-field="status"]').first).to_have_text("queued")
    page.wait_for_timeout(500)
    assert len(streams) == 1, streams
    assert streams[0].count("id=") == 3


def test_a_jobs_page_shows_times_in_the_readers_zone(live_server_url, browser, real_redis):  # noqa: F811
    from tasks_app import jobs

    job_id = jobs.enqueue_task(1)
    page = browser.new_context(timezone_id="Asia/Tokyo", locale="en-GB").new_page()
    page.goto(f"{live_server_url}/jobs/{job_id}")
    enqueued = page.locator("time").first
    expect(enqueued).not_to_contain_text("UTC")  # the browser rewrote the server's UTC text
    iso = enqueued.get_attribute("datetime")
    shown = page.evaluate(
        "iso => new Intl.DateTimeFormat(undefined, {dateStyle: 'medium', timeStyle: 'medium'}).format(new Date(iso))",
        iso,
    )
    expect(enqueued).to_have_text(shown)  # e.g. "6 Dec 2026, 13:59:28": Tokyo time, no ISO "T"
    assert "T" not in shown and iso.endswith("Z")
    page.context.close()
