"""Take the README's admin screenshots from a real, private stack with real jobs.

    .venv/bin/python docs/screenshots/take.py [--minutes 3]

Starts a private redis-server, a SQLite database, the web server and three workers on free
loopback ports, signs in a superuser, submits a mix of jobs for a few minutes (most finish,
some fail, one is canceled, one waits an hour, one runs long), then photographs the pages with
headless Chromium into this folder. Everything it starts is stopped at the end.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import django

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_site.settings")
django.setup()

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.support.processes import (  # noqa: E402
    PROJECT_ROOT,
    child_env,
    free_port,
    manage_py,
    redis_server,
    stop,
    wait_until,
)

PASSWORD = "screenshots-only"  # noqa: S105 - a throwaway account in a throwaway database

# Run in the web's environment through `manage.py shell`: jobs of every outcome.
SUBMIT = """
import random
from tasks_app import jobs as app_jobs
from tests.support import jobs
for _ in range({finished}):
    app_jobs.enqueue_task(random.choice([0, 1, 1, 2]), queue_name=random.choice(["high", "default", "default", "low"]),
                          submitter={{"user_id": 1, "username": "admin", "ip": "127.0.0.1"}})
for n in range({failed}):
    app_jobs.enqueue_call(jobs.explode, (f"disk {{n}} is full",), kind="sleep", description="Copy to disk",
                          submitter={{"user_id": None, "username": "", "ip": "10.0.0.7"}})
"""
SETUP = """
from tasks_app import jobs as app_jobs
from tests.support import jobs
anonymous = {"user_id": None, "username": "", "ip": "10.0.0.9"}
canceled = app_jobs.enqueue_task(2, queue_name="low", delay=600, submitter=anonymous)
app_jobs.cancel_task(canceled)
app_jobs.enqueue_task(1, queue_name="low", delay=3600, submitter={"user_id": 1, "username": "admin", "ip": "127.0.0.1"})
app_jobs.enqueue_task(3, queue_name="high", submitter={"user_id": 1, "username": "admin", "ip": "127.0.0.1"})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3, help="how long to submit jobs before photographing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, redis_server(Path(scratch) / "redis") as (redis_port, _):
        env = child_env(
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            DATABASE_URL=f"sqlite:///{scratch}/db.sqlite3",
            TASK_UNIT_SECONDS="4",
            TASK_POLICIES='{"sleep": {"max_retries": 0}}',
            DJANGO_DEBUG="true",
            DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        )

        def run(*command: str) -> None:
            subprocess.run([sys.executable, "manage.py", *command], cwd=PROJECT_ROOT, env=env, check=True)

        run("migrate", "--noinput")
        run("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
        port = free_port()
        processes = [manage_py("runserver", "--noreload", f"127.0.0.1:{port}", env=env)]
        processes += [manage_py("rqworker", "high", "default", "low", env=env) for _ in range(3)]
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: http_ok(base_url + "/admin/login/"), 30, "the web server")
            run("shell", "-c", SETUP)
            deadline = time.monotonic() + args.minutes * 60
            while time.monotonic() < deadline:
                run("shell", "-c", SUBMIT.format(finished=8, failed=int(time.monotonic()) % 2))
                time.sleep(20)
            run("shell", "-c", SUBMIT.format(finished=6, failed=0))  # some still queued in the pictures
            photograph(base_url)
        finally:
            for process in processes:
                stop(process)


def http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own loopback server
            return True
    except OSError:
        return False


def photograph(base_url: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
        page.goto(base_url + "/admin/login/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(base_url + "/admin/")
        # The admin's model sidebar folded away, as a person may leave it, to give the lists room.
        page.evaluate("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
        shots = {
            "admin-index.png": ("/admin/", False),
            "queue-health.png": ("/admin/tasks_app/jobrecord/health/", True),
            "job-history.png": ("/admin/tasks_app/jobrecord/", False),
            "django-rq-dashboard.png": ("/admin/django_rq/dashboard/", True),
        }
        for name, (path, full_page) in shots.items():
            page.goto(base_url + path)
            page.wait_for_selector("#live-refresh, #monitoring")
            page.screenshot(path=str(HERE / name), full_page=full_page)
        page.goto(base_url + "/admin/tasks_app/jobrecord/?status__exact=failed")
        page.locator("#result_list tbody tr th a, #result_list tbody tr td.field-job a").first.click()
        page.wait_for_selector(".job-traceback")
        page.screenshot(path=str(HERE / "job-detail.png"), full_page=True)
        # What Delete asks before it deletes the failed jobs (nothing is deleted: the page is left).
        page.goto(base_url + "/admin/tasks_app/jobrecord/?status__exact=failed")
        page.locator("#action-toggle").check()
        page.select_option("select[name=action]", "delete_jobs")
        page.get_by_role("button", name="Go").click()
        page.wait_for_selector("#confirm-action")
        page.screenshot(path=str(HERE / "job-confirm.png"))
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(base_url + "/admin/tasks_app/jobrecord/")
        page.wait_for_selector("#live-refresh")
        page.screenshot(path=str(HERE / "job-history-phone.png"))
        browser.close()


if __name__ == "__main__":
    main()
