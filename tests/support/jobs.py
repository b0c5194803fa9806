"""Jobs that only the tests enqueue; workers import them by path like any task."""

from pathlib import Path

from tasks_app.tasks import reports_start


@reports_start
def explode(message: str) -> None:
    raise ValueError(message)


@reports_start
def touch(path: str) -> bool:
    Path(path).write_text("ran")
    return True


@reports_start
def flaky(counter_key: str, failures: int) -> str:
    """Fail the first `failures` runs (counted in Redis), then succeed."""
    from rq import get_current_job

    runs = get_current_job().connection.incr(counter_key)
    if runs <= failures:
        raise ConnectionError(f"transient failure {runs} of {failures}")
    return f"succeeded on run {runs}"
