"""How `make bench-profile` charges py-spy's samples to layers (bench/cpu_profile.py)."""

import pytest

from bench.cpu_profile import STANDARD_LIBRARY, hottest_functions, layer_shares, read_stacks
from tests.support.processes import PROJECT_ROOT

SUPERVISOR = 'process 10:"python -m taskqueue_site.serve taskqueue_site.asgi:application --workers 2"'
# The real command line holds a ";", which splits it: what is left is no frame and is dropped.
WORKER = 'process 11:"python -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=10)"'
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
        # ... or from after the standard library's directory, or the project's.
        f"{SUPERVISOR};{WORKER};WSGIBridge.respond ({PROJECT_ROOT}/taskqueue_site/asgi.py:119);"
        "JSONDecoder.decode (/usr/lib/python3.11/json/decoder.py:337) 4",
        # The event loop's own work (uvloop in C under asyncio's runner) is a layer of its own,
        # not uvicorn's, though uvicorn runs the loop; uvicorn's protocol code stays uvicorn's.
        f"{SUPERVISOR};{WORKER};Server.run (uvicorn/server.py:86);asyncio_run (uvicorn/_compat.py:30);"
        "Runner.run (asyncio/runners.py:118) 5",
        f"{SUPERVISOR};{WORKER};Server.run (uvicorn/server.py:86);asyncio_run (uvicorn/_compat.py:30);"
        "Runner.run (asyncio/runners.py:118);HttpToolsProtocol.data_received "
        "(uvicorn/protocols/http/httptools_impl.py:130) 2",
        "",
        "a line that is not a stack",
    ]
)


def test_each_sample_is_charged_to_its_innermost_frame_outside_the_standard_library():
    shares = layer_shares(read_stacks(RAW))

    assert shares["Django"] == pytest.approx(6 / 26)
    assert shares["redis-py"] == pytest.approx(3 / 26)
    assert shares["RQ and django-rq"] == pytest.approx(2 / 26)
    assert shares["ours: serving (serve.py, asgi.py)"] == pytest.approx(4 / 26)
    assert shares["event loop (asyncio, uvloop)"] == pytest.approx(5 / 26)
    assert shares["uvicorn (HTTP)"] == pytest.approx(2 / 26)
    assert shares["other packages"] == pytest.approx(1 / 26)
    assert shares[STANDARD_LIBRARY] == pytest.approx(3 / 26)
    assert shares["ours: the app (tasks_app)"] == 0
    assert sum(shares.values()) == pytest.approx(1)


def test_process_frames_are_not_python_frames():
    stacks = read_stacks(RAW)

    assert sum(stacks.values()) == 26
    assert all(not frame.startswith("process ") for stack in stacks for frame in stack)


def test_the_hottest_functions_are_the_innermost_frames_most_sampled():
    hottest = hottest_functions(read_stacks(RAW), 2)

    assert hottest == [
        ("JSONEncoder.iterencode (json/encoder.py)", pytest.approx(6 / 26)),
        ("Runner.run (asyncio/runners.py)", pytest.approx(5 / 26)),
    ]


def test_no_samples_give_no_shares():
    shares = layer_shares(read_stacks(""))

    assert set(shares.values()) == {0}
