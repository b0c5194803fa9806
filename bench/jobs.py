"""Jobs for measuring the workers themselves."""


def noop() -> bool:
    return True
