"""How `make bench-profile` charges py-spy's samples to layers (bench/cpu_profile.py)."""

import pytest

from bench.cpu_profile import STANDARD_LIBRARY, hottest_functions, layer_shares, read_stacks

SUPERVISOR = 'process 10:"python -m taskqueue_site.serve taskqueue_site.asgi:application --workers 2"'
WORKER = 'process 11:"python -c from multiprocessing.spawn import spawn_main"'
THREAD = ";".join(
    [
        "Thread._bootstrap (threading.py:1002)",
        "_worker (concurrent/futures/thread.py:83)",
        "WSGIBridge.respond (taskqueue_site/asgi.py:119)",
        "WSGIHandler.__call__ (django/core/handlers/wsgi.py:123)",
    ]
)
# py-spy's raw output as it writes it: the process frames first, then the Python frames, then a count.
RAW = "\n".join(
    [
        # Django's JsonResponse encoding: json is the standard library, so it is Django's time.
        f"{SUPERVISOR};{WORKER};{THREAD};JsonResponse.__init__ (django/http/response.py:746);"
        "JSONEncoder.iterencode (json/encoder.py:205) 6",
        # The view reading Redis: redis-py's frame is the innermost outside the standard library.
        f"{SUPERVISOR};{WORKER};{THREAD};task_status (tasks_app/views.py:185);"
        "Redis.hgetall (redis/commands/core.py:4900);"
        "_HiredisParser.read_from_socket (redis/_parsers/hiredis.py:179) 3",
        # An installed package outside the named layers.
        f"{SUPERVISOR};{WORKER};{THREAD};WhiteNoiseMiddleware.__call__ (whitenoise/middleware.py:116) 1",
        # A pool thread between requests: nothing but the standard library.
        f"{SUPERVISOR};{WORKER};Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:83) 2",
        # Frozen and generated modules count as the standard library too.
        f"{SUPERVISOR};{WORKER};<module> (<string>:1);_find_and_load (<frozen importlib._bootstrap>:1176) 1",
        # Absolute paths (a package py-spy could not shorten) are read from after site-packages.
        f"{SUPERVISOR};{WORKER};Queue.enqueue (/srv/.venv/lib/python3.11/site-packages/rq/queue.py:1030) 2",
        "",
        "a line that is not a stack",
    ]
)


def test_each_sample_is_charged_to_its_innermost_frame_outside_the_standard_library():
    shares = layer_shares(read_stacks(RAW))

    assert shares["Django"] == pytest.approx(6 / 15)
    assert shares["redis-py"] == pytest.approx(3 / 15)
    assert shares["RQ and django-rq"] == pytest.approx(2 / 15)
    assert shares["other packages"] == pytest.approx(1 / 15)
    assert shares[STANDARD_LIBRARY] == pytest.approx(3 / 15)
    assert shares["ours: the app (tasks_app)"] == 0
    assert sum(shares.values()) == pytest.approx(1)


def test_process_frames_are_not_python_frames():
    stacks = read_stacks(RAW)

    assert sum(stacks.values()) == 15
    assert all(not frame.startswith("process ") for stack in stacks for frame in stack)


def test_the_hottest_functions_are_the_innermost_frames_most_sampled():
    hottest = hottest_functions(read_stacks(RAW), 2)

    assert hottest == [
        ("JSONEncoder.iterencode (json/encoder.py)", pytest.approx(6 / 15)),
        ("_HiredisParser.read_from_socket (redis/_parsers/hiredis.py)", pytest.approx(3 / 15)),
    ]


def test_no_samples_give_no_shares():
    shares = layer_shares(read_stacks(""))

    assert set(shares.values()) == {0}
