"""Jobs that only the tests enqueue; workers import them by path like any task."""

from pathlib import Path


def explode(message: str) -> None:
    raise ValueError(message)


def touch(path: str) -> bool:
    Path(path).write_text("ran")
    return True
