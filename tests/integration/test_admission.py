"""Admission under concurrency: the queue-depth limit holds when many clients submit at once."""

from concurrent.futures import ThreadPoolExecutor

from django.test import Client


def test_sixty_concurrent_submissions_never_overshoot_a_depth_limit_of_twenty(real_redis, settings):
    settings.TASKS_RATE_LIMIT = "off"
    settings.TASKS_MAX_QUEUE_DEPTH = 20

    def submit(n: int) -> int:
        body = {"type": 1, "delay": 3600} if n % 3 == 0 else {"type": 1}  # delayed jobs count too
        return Client(enforce_csrf_checks=True).post("/tasks", body, content_type="application/json").status_code

    with ThreadPoolExecutor(max_workers=60) as pool:
        codes = list(pool.map(submit, range(60)))
    assert sorted(set(codes)) == [202, 503]
    assert codes.count(202) == 20
