"""The admin in a real browser: pages follow jobs by themselves, without reloading."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from playwright.sync_api import expect

from tasks_app import history, jobs
from tasks_app.models import JobRecord
from tasks_app.permissions import OPERATORS_GROUP, VIEWERS_GROUP
from tests.integration.conftest import real_redis, redis_port, start_worker  # noqa: F401 - fixtures
from tests.support import jobs as support_jobs

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HISTORY = "/admin/tasks_app/jobrecord/"
PASSWORD = "correct horse battery staple"
FAST = {"enabled": True, "seconds": 2}


def signed_in(browser, live_server_url: str, group: str, width: int = 1280, height: int = 800):
    """A new browser window of a new staff account in `group`, whose pages refresh every 2 s."""
    user = User.objects.create_user(f"{group.split()[-1]}-{User.objects.count()}", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(15_000)
    page.goto(live_server_url + "/admin/login/")
    page.evaluate(f"localStorage.setItem('taskqueue.admin.live', '{json.dumps(FAST)}')")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#monitoring")).to_be_visible()
    return page


@pytest.fixture
def staff_page(live_server_url, browser):
    """A signed-in staff member (a viewer: looking needs no more)."""
    page = signed_in(browser, live_server_url, VIEWERS_GROUP)
    yield page
    page.context.close()


@pytest.fixture
def operator_page(live_server_url, browser):
    page = signed_in(browser, live_server_url, OPERATORS_GROUP)
    yield page
    page.context.close()


def open_tab(page, url: str):
    tab = page.context.new_page()
    tab.set_default_timeout(15_000)
    tab.goto(url)
    tab.evaluate("window.neverReloaded = true")  # a reload would forget this
    return tab


def history_status(page, job_id: str):
    return page.locator(f'#result_list tr:has(span.job-id[title="{job_id}"]) .job-status')


def test_health_page_history_list_and_dashboard_follow_a_job_without_reloading(
    live_server_url,
    staff_page,
    start_worker,  # noqa: F811
):
    job_id = jobs.enqueue_task(1)
    history = open_tab(staff_page, live_server_url + HISTORY)
    health = open_tab(staff_page, live_server_url + HISTORY + "health/")
    dashboard = open_tab(staff_page, live_server_url + "/admin/django_rq/dashboard/")
    expect(history_status(history, job_id)).to_have_text("queued")
    expect(health.locator("#tile-waiting")).to_have_text("1")
    default_queued = dashboard.locator("#results_list tbody tr").first.locator("th").nth(1)
    expect(default_queued).to_have_text("1")

    start_worker(burst=False, unit_seconds=1)

    expect(history_status(history, job_id)).to_have_text("finished", timeout=20_000)
    expect(health.locator("#tile-finished")).to_have_text("1", timeout=20_000)
    expect(health.locator("#tile-waiting")).to_have_text("0")
    expect(health.locator("#tile-workers")).to_have_text("1")
    expect(health.locator("#throughput-table tbody tr td").nth(1)).to_have_text("1")
    expect(default_queued).to_have_text("0", timeout=20_000)
    for tab in (history, health, dashboard):
        assert tab.evaluate("window.neverReloaded") is True
        expect(tab.locator(".live-refresh-status")).to_contain_text("Updated")


def test_refresh_can_be_paused_and_the_choice_is_remembered(live_server_url, staff_page, real_redis):  # noqa: F811
    staff_page.goto(live_server_url + HISTORY)
    toggle = staff_page.get_by_label("Auto-refresh")
    expect(toggle).to_be_checked()
    toggle.uncheck()
    expect(staff_page.locator(".live-refresh-status")).to_have_text("Paused")

    job_id = jobs.enqueue_task(1)
    staff_page.wait_for_timeout(5_000)  # two refresh intervals: a running refresh would show the job
    expect(history_status(staff_page, job_id)).to_have_count(0)

    staff_page.reload()
    expect(staff_page.get_by_label("Auto-refresh")).not_to_be_checked()  # remembered
    expect(history_status(staff_page, job_id)).to_have_text("queued")

    second = jobs.enqueue_task(2)
    staff_page.get_by_label("Refresh interval").select_option("2")
    staff_page.get_by_label("Auto-refresh").check()
    expect(history_status(staff_page, second)).to_have_text("queued")


def test_a_selection_holds_the_refresh_so_it_is_not_lost(live_server_url, staff_page, real_redis):  # noqa: F811
    # A viewer has no actions, so no checkboxes: the search box stands for any input being edited.
    staff_page.goto(live_server_url + HISTORY)
    staff_page.fill("#searchbar", "half-typed")
    staff_page.locator("h1").click()  # the box loses the focus but keeps its text
    job_id = jobs.enqueue_task(1)
    expect(staff_page.locator(".live-refresh-status")).to_contain_text("Waiting", timeout=10_000)
    expect(staff_page.locator("#searchbar")).to_have_value("half-typed")
    expect(history_status(staff_page, job_id)).to_have_count(0)


def test_a_jobs_page_shows_its_timeline_as_the_attempts_happen(
    live_server_url,
    staff_page,
    start_worker,  # noqa: F811
    settings,
):
    settings.TASK_POLICIES = {"sleep": {"timeout": 60, "max_retries": 1, "retry_intervals": [0]}}
    job_id = jobs.enqueue_call(support_jobs.flaky, ("runs", 1), kind="sleep", description="flaky")
    history.record_new_jobs()
    page = open_tab(staff_page, f"{live_server_url}{HISTORY}{JobRecord.objects.get(job_id=job_id).pk}/change/")
    timeline = page.locator("#attempts-group")
    expect(timeline).to_contain_text("Timeline: every attempt")
    expect(page.locator(".field-now")).to_contain_text("queued")

    start_worker()

    attempts = timeline.locator("tbody tr.has_original")
    expect(attempts).to_have_count(2, timeout=20_000)
    expect(attempts.nth(0).locator(".field-outcome")).to_have_text("Failed")
    expect(attempts.nth(0).locator(".field-error")).to_have_text("ConnectionError: transient failure 1 of 1")
    expect(attempts.nth(1).locator(".field-outcome")).to_have_text("Finished")
    expect(attempts.nth(1).locator(".field-number")).to_have_text("2")
    assert page.evaluate("window.neverReloaded") is True


# --- Layout, confirmations and buttons ------------------------------------------------------------

DASHBOARD = "/admin/django_rq/dashboard/queues/0/"  # django-rq numbers queues by name: 0 is default
LONG_ERROR = "ValueError: the image /var/lib/taskqueue/media/uploads/" + "holiday-photo-" * 6 + ".jpg is damaged"


def add_history(count: int = 50) -> None:
    """A full page of history rows as workers write them: finished, failed with long errors, running."""
    from django.utils import timezone

    from tasks_app.models import JobRecord

    now = timezone.now()
    for n in range(count):
        state = "failed" if n % 10 == 0 else "started" if n == 1 else "finished"
        JobRecord.objects.create(
            job_id=f"{n:08x}-0000-4000-8000-000000000000",
            status=state,
            queue="default",
            function="tasks_app.tasks.send_confirmation_email" if n % 3 else "tasks_app.tasks.sleep_task",
            task_type=None if n % 3 else 2,
            created_at=now - timedelta(minutes=n),
            started_at=now - timedelta(minutes=n, seconds=-1),
            duration=None if state == "started" else timedelta(seconds=184),
            attempt=5 if state == "failed" else 1,
            max_attempts=5,
            error=LONG_ERROR if state == "failed" else "",
            result='{"email": "someone.with.a.long.address@example.com"}' if state == "finished" else "",
            worker_name="worker-" + "x" * 40,
            submitter_username="operator-with-a-long-name",
        )


def table_fits(page) -> bool:
    return page.evaluate(
        "() => { const table = document.querySelector('#result_list');"
        " return table.scrollWidth <= table.closest('.results').clientWidth; }"
    )


def test_at_1280_px_the_history_shows_its_key_columns_without_scrolling(live_server_url, operator_page, real_redis):  # noqa: F811
    add_history()
    page = operator_page  # an operator's list has the actions' checkboxes too: the widest
    page.goto(live_server_url + HISTORY)
    expect(page.locator("#result_list tbody tr")).to_have_count(50)
    assert table_fits(page)
    expect(page.locator("#changelist-filter").get_by_role("link", name="Failed", exact=True)).to_be_visible()

    page.locator("#changelist-filter").get_by_role("link", name="Failed", exact=True).click()
    expect(page.locator("#result_list tbody tr")).to_have_count(5)
    assert table_fits(page)
    row = page.locator("#result_list tbody tr").first
    expect(row.locator("td.field-outcome")).to_contain_text(LONG_ERROR[:60])
    for field in ("status_display", "task", "submitted", "duration_display", "outcome"):
        box = row.locator(f"td.field-{field}").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 1280, field


def test_at_390_px_the_history_filters_come_before_the_rows(live_server_url, browser, real_redis):  # noqa: F811
    add_history()
    page = signed_in(browser, live_server_url, OPERATORS_GROUP, width=390, height=844)
    page.goto(live_server_url + HISTORY)
    first_row = page.locator("#result_list tbody tr").first
    failed = page.locator("#changelist-filter").get_by_role("link", name="Failed", exact=True)
    expect(failed).to_be_hidden()  # folded, so the rows are a scroll away, not 40 lines of filters
    summary = page.locator("#filter-disclosure > summary")
    assert summary.bounding_box()["y"] < first_row.bounding_box()["y"]
    summary.click()
    expect(failed).to_be_visible()
    assert failed.bounding_box()["y"] < first_row.bounding_box()["y"]
    page.locator(".live-refresh-now").click()
    expect(page.locator(".live-refresh-status")).to_contain_text("Updated")
    expect(failed).to_be_visible()  # a refresh leaves the disclosure as it was
    for control in (page.locator("select[name=action]"), page.get_by_role("button", name="Go")):
        box = control.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    failed.click()
    expect(page.locator("#result_list tbody tr")).to_have_count(5)
    assert table_fits(page)  # each row a card: the error on its own line, not off to the right
    box = page.locator("#result_list tbody tr td.field-outcome").first.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.context.close()


def redis_status(real_redis, job_id: str) -> str | None:  # noqa: F811
    from rq.exceptions import NoSuchJobError
    from rq.job import Job
    from rq.serializers import JSONSerializer

    try:
        return Job.fetch(job_id, connection=real_redis.connection, serializer=JSONSerializer).get_status().value
    except NoSuchJobError:
        return None


def choose_action(page, job_id: str, action: str) -> None:
    page.locator(f'#result_list tr:has(span.job-id[title="{job_id}"]) input.action-select').check()
    page.select_option("select[name=action]", action)
    page.get_by_role("button", name="Go").click()


@pytest.mark.parametrize(
    ("action", "label", "done", "after"),
    [("cancel_jobs", "Cancel", "canceled", "canceled"), ("delete_jobs", "Delete", "deleted", None)],
)
def test_bulk_cancel_and_delete_ask_first_and_do_nothing_until_confirmed(
    live_server_url,
    operator_page,
    real_redis,  # noqa: F811
    action,
    label,
    done,
    after,
):
    job_id = jobs.enqueue_task(1)  # no worker: it waits
    page = operator_page
    page.goto(live_server_url + HISTORY)
    choose_action(page, job_id, action)
    expect(page.locator("h1")).to_have_text(f"{label} 1 job?")
    expect(page.locator(".job-confirmation")).to_contain_text(f"1 of the 1 selected job will be {done}")
    expect(page.locator(".live-refresh")).to_have_count(0)  # a question never changes under the reader
    assert redis_status(real_redis, job_id) == "queued"
    page.get_by_role("link", name="No, take me back").click()
    expect(history_status(page, job_id)).to_have_text("queued")
    assert redis_status(real_redis, job_id) == "queued"

    choose_action(page, job_id, action)
    page.get_by_role("button", name=f"Yes, {label.lower()} 1 job").click()
    expect(page.locator(".messagelist")).to_contain_text(f"{job_id}: {done}.")
    assert redis_status(real_redis, job_id) == after


def test_stopping_from_a_jobs_page_asks_first(live_server_url, operator_page, start_worker):  # noqa: F811
    from tasks_app.models import JobRecord

    start_worker(burst=False, unit_seconds=30)
    job_id = jobs.enqueue_task(1)
    page = operator_page
    page.goto(live_server_url + HISTORY)
    expect(history_status(page, job_id)).to_have_text("started", timeout=20_000)
    page.goto(f"{live_server_url}{HISTORY}{JobRecord.objects.get(job_id=job_id).pk}/change/")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("h1")).to_have_text("Stop 1 job?")
    assert JobRecord.objects.get(job_id=job_id).status == "started"
    page.get_by_role("button", name="Yes, stop 1 job").click()
    expect(page.locator(".messagelist")).to_contain_text(f"{job_id}: asked to stop.")
    expect(page.locator(".field-status_display")).to_contain_text("stopped", timeout=20_000)


def test_viewers_see_no_button_they_may_not_use(live_server_url, browser, real_redis):  # noqa: F811
    job_id = jobs.enqueue_task(1)
    viewer = signed_in(browser, live_server_url, VIEWERS_GROUP)
    operator = signed_in(browser, live_server_url, OPERATORS_GROUP)
    buttons = {
        f"{DASHBOARD}failed/": ["a:text-is('Requeue All')", "a:text-is('Delete All')", "#changelist-form .actions"],
        DASHBOARD: ["a:text-is('Empty Queue')", "#changelist-form .actions", "input.action-select"],
        f"{DASHBOARD}{job_id}/": [".submit-row a:text-is('Delete')"],
        HISTORY: ["select[name=action]", "input.action-select"],
    }
    for path, selectors in buttons.items():
        for page in (viewer, operator):
            page.goto(live_server_url + path)
            for selector in selectors:
                shown = expect(page.locator(selector).first)
                shown.to_be_hidden() if page is viewer else shown.to_be_visible()
    # django-rq's "all" actions ask first too, and change nothing until confirmed.
    operator.goto(live_server_url + DASHBOARD)
    operator.locator("a:text-is('Empty Queue')").click()
    expect(operator.locator("#content")).to_contain_text("Are you sure")
    assert redis_status(real_redis, job_id) == "queued"
    viewer.context.close()
    operator.context.close()


# Every table of the health page fits its box, and every chart label is legible.
LAYOUT = """() => ({
    page: [document.documentElement.scrollWidth, window.innerWidth],
    tables: [...document.querySelectorAll(".health-numbers")].map(
        (box) => [box.querySelector("table").id, box.scrollWidth, box.clientWidth]),
    labels: [...document.querySelectorAll(".chart-label, .chart-axis span")].filter((label) => label.textContent.trim())
        .map((label) => [parseFloat(getComputedStyle(label).fontSize), label.getBoundingClientRect().height]),
    charts: [...document.querySelectorAll("#queue-history svg.column-chart-plot")].map(
        (chart) => [chart.getAttribute("aria-label"), chart.querySelectorAll("rect").length]),
})"""


@pytest.mark.parametrize("width, height", [(1280, 800), (390, 844)])
def test_health_page_fits_the_screen_with_legible_labels(live_server_url, staff_page, real_redis, width, height):  # noqa: F811
    started = timezone.now() - timedelta(minutes=7)
    JobRecord.objects.bulk_create(
        JobRecord(
            job_id=f"job-{n}",
            status="finished",
            queue="default",
            created_at=started,
            enqueued_at=started,
            started_at=started + timedelta(seconds=5 * n),  # some wait across two minute marks
            ended_at=started + timedelta(seconds=6 * n),
            duration=timedelta(seconds=n),
        )
        for n in range(1, 30)
    )
    staff_page.set_viewport_size({"width": width, "height": height})
    staff_page.goto(live_server_url + HISTORY + "health/")
    layout = staff_page.evaluate(LAYOUT)

    assert layout["page"][0] <= layout["page"][1]
    assert [table for table, scroll, client in layout["tables"] if scroll > client] == []
    assert {table for table, _, _ in layout["tables"]} == {
        "throughput-table",
        "queue-table",
        "latency-table",
        "worker-table",
    }
    assert layout["labels"] and all(size >= 11 and box >= 11 for size, box in layout["labels"])
    charts = dict(layout["charts"])
    assert set(charts) == {
        f"{queue}: {chart}"
        for queue in ("default", "high", "low")
        for chart in ("jobs waiting", "wait time, p50 and p95", "run time, p50 and p95")
    }
    assert charts["default: wait time, p50 and p95"] >= 2 and charts["default: run time, p50 and p95"] >= 2
    assert charts["default: jobs waiting"] > 0 and charts["high: jobs waiting"] == 0
