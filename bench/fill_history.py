"""Fill the job history with N made-up rows, as a busy site writes them, to measure the admin at scale.

    .venv/bin/python bench/fill_history.py --rows 1000000           # the database of DATABASE_URL
    .venv/bin/python bench/fill_history.py --rows 1000000 --days 30

Rows are spread over the last --days days, newest now: every status, queue and task, failures
with their errors, confirmation emails with their addresses, some anonymous submitters. A bench
script, not a management command: nobody should be one typo away from faking a production history.
"""

import argparse
import json
import os
import random
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_site.settings")

import django

django.setup()

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from tasks_app.models import JobRecord

BATCH = 5000
QUEUES = (("default", 6), ("high", 2), ("low", 2))
STATUSES = (
    ("finished", 820),
    ("failed", 80),
    ("stopped", 10),
    ("canceled", 30),
    ("deleted", 10),
    ("queued", 20),
    ("scheduled", 10),
    ("deferred", 5),
    ("started", 15),
)
ERRORS = {
    "sleep": ["JobTimeoutException: Task exceeded maximum timeout value (60 seconds)", "ValueError: unknown type 7"],
    "thumbnail": [
        "OSError: the image file is damaged (truncated JPEG data)",
        "FileNotFoundError: [Errno 2] No such file or directory: 'uploads/photo.jpg'",
    ],
    "confirmation_email": [
        "SMTPServerDisconnected: Connection unexpectedly closed",
        "SMTPRecipientsRefused: 550 mailbox unavailable",
    ],
}
STOPPED = "Stopped by an operator"
USERS = ("olga", "victor", "amir", "chen", "ines")


def weighted(pairs: tuple) -> list:
    return [value for value, weight in pairs for _ in range(weight)]


def make_row(rng: random.Random, created_at: datetime, user_ids: dict[str, int]) -> JobRecord:
    """One job's row as history.py would have written it."""
    status = rng.choice(STATUS_POOL)
    kind = rng.choice(("sleep", "sleep", "sleep", "thumbnail", "confirmation_email"))
    fields = {"kind": kind, "task_type": None, "email": "", "result": "", "error": "", "traceback": ""}
    if kind == "sleep":
        fields["task_type"] = task_type = rng.randrange(4)
        fields.update(function="tasks_app.tasks.sleep_task", description=f"Sleep of type {task_type}")
        result = "true"
    elif kind == "thumbnail":
        name = f"uploads/{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}.jpg"
        fields.update(function="tasks_app.tasks.make_thumbnails", description=f"Thumbnails of {name}")
        thumbnails = [
            {"size": size, "url": f"/media/{name[:-4]}-{size}.jpg", "width": size, "height": size * 3 // 4}
            for size in (128, 512)
        ]
        result = json.dumps({"original": {"width": 4000, "height": 3000}, "thumbnails": thumbnails})
    else:
        fields["email"] = email = f"user{rng.randrange(50_000)}@example.{rng.choice(('com', 'org', 'net'))}"
        fields.update(function="tasks_app.tasks.send_confirmation_email", description=f"Confirmation email to {email}")
        result = f'{{"email": "{email}"}}'
    max_attempts = {"sleep": 3, "thumbnail": 2, "confirmation_email": 5}[kind]
    attempt = 1 if rng.random() < 0.9 else rng.randint(1, max_attempts)
    ran = status not in {"queued", "scheduled", "deferred", "canceled"}
    started_at = created_at + timedelta(milliseconds=rng.randrange(5, 3000)) if ran else None
    ended = status in {"finished", "failed", "stopped", "canceled"}
    ended_at = (started_at or created_at) + timedelta(milliseconds=rng.randrange(50, 60_000)) if ended else None
    if status == "finished":
        fields["result"] = result
    elif status == "failed" or (attempt > 1 and status != "finished"):
        fields["error"] = rng.choice(ERRORS[kind])
        fields["traceback"] = (
            f"Traceback (most recent call last):\n  ...\n{fields['error']}" if status == "failed" else ""
        )
    elif status == "stopped":
        fields["error"] = STOPPED
    username = rng.choice(USERS) if rng.random() < 0.7 else ""
    return JobRecord(
        job_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        status=status,
        queue=rng.choice(QUEUE_POOL),
        created_at=created_at,
        enqueued_at=created_at,
        started_at=started_at,
        ended_at=ended_at,
        duration=ended_at - started_at if ended_at and started_at else None,
        attempt=attempt,
        max_attempts=max_attempts,
        worker_name=uuid.UUID(int=rng.getrandbits(128)).hex if ran else "",
        submitted_by_id=user_ids.get(username),
        submitter_username=username,
        submitter_ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        event_order=0,
        updated_at=ended_at or created_at,
        **fields,
    )


STATUS_POOL = weighted(STATUSES)
QUEUE_POOL = weighted(QUEUES)


def fill(rows: int, days: float = 30, seed: int = 17, log=print) -> None:
    """Insert `rows` rows, created over the last `days` days, in batches of BATCH."""
    rng = random.Random(seed)  # noqa: S311 - made-up rows, the same ones each run
    now = timezone.now()
    users = get_user_model().objects
    user_ids = {name: users.get_or_create(username=name, defaults={"is_active": False})[0].pk for name in USERS}
    step = timedelta(days=days) / max(rows, 1)
    started = time.monotonic()
    for first in range(0, rows, BATCH):
        # Oldest first, as a real history grows.
        batch = [make_row(rng, now - step * (rows - n), user_ids) for n in range(first, min(first + BATCH, rows))]
        with transaction.atomic():
            JobRecord.objects.bulk_create(batch)
        if first // BATCH % 20 == 19:
            log(f"{first + len(batch):,} rows, {time.monotonic() - started:.0f} s")
    log(f"{rows:,} rows in {time.monotonic() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30, help="spread the rows over this many days (default 30)")
    parser.add_argument("--seed", type=int, default=17)
    options = parser.parse_args()
    fill(options.rows, options.days, options.seed)


if __name__ == "__main__":
    main()
