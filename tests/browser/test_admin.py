"""The admin in a real browser: pages follow jobs by themselves, without reloading."""

import json

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from tasks_app import jobs
from tests.integration.conftest import real_redis, redis_port, start_worker  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HISTORY = "/admin/tasks_app/jobrecord/"
PASSWORD = "correct horse battery staple"
FAST = {"enabled": True, "seconds": 2}


@pytest.fixture
def staff_page(live_server_url, browser):
    """A signed-in staff member (a viewer: looking needs no more) whose pages refresh every 2 s."""
    from django.contrib.auth.models import Group

    from tasks_app.permissions import VIEWERS_GROUP

    user = User.objects.create_user("watcher", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=VIEWERS_GROUP))
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(live_server_url + "/admin/login/")
    page.evaluate(f"localStorage.setItem('taskqueue.admin.live', '{json.dumps(FAST)}')")
    page.fill("#id_username", "watcher")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#monitoring")).to_be_visible()
    yield page
    context.close()


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
    from datetime import timedelta

    from django.utils import timezone

    from tasks_app.models import JobRecord

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
