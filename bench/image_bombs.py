"""`make bench-images`: hostile images, eight at once, against the production server; RSS and /healthz.

Starts a private redis-server and the site exactly as compose.yml runs it (uvicorn, 2 workers,
production settings, the rate limit off so that every upload reaches the image checks). For each
kind of hostile image it sends 8 concurrent uploads, `--rounds` times, while one client times
GET /healthz back to back and a sampler reads every web process's resident memory from /proc.
Targets (issue #15, item 5): every web process under 300 MB, /healthz under 100 ms.
"""

import argparse
import contextlib
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from bench.results import IMAGES, write_section
from tests.support import images
from tests.support.multipart import post_multipart
from tests.support.processes import child_env, descendants, redis_server, start_asgi_server, stop
from tests.support.webserver import PRODUCTION_FLAGS, production_env

CONCURRENT = 8
WEB_WORKERS = 2
RSS_TARGET_MB = 300
HEALTHZ_TARGET_MS = 100
HOW = (
    "How memory stays bounded: the form reads each image's header only and refuses a bomb by its declared "
    "size (at most THUMBNAIL_MAX_PIXELS, at most 30,000 pixels a side) before anything is decoded; an admitted "
    "image is decoded once, one at a time per process; and the image's GLIBC_TUNABLES "
    "(glibc.malloc.mmap_threshold) makes glibc return a decoded image's memory to the system when it is "
    "freed. Without it each thread's heap keeps the last image it decoded, and a web process holds several "
    "(tests/integration/test_image_bombs.py then fails)."
)
HEALTHZ_MISSED = (
    "Why /healthz can miss: its worst times come while both web processes decode a 50-megapixel image "
    "(the costliest work an upload can cause) on a 2-core machine that the client, and here other work (the load "
    "average above), share: /healthz waits for a core, not for the decoding thread, which releases the "
    "GIL. Refused bombs cost milliseconds. Keeping /healthz fast under such load needs a core to spare "
    "(more cores than web processes) or decoding out of the web process."
)


def hostile_images() -> dict[str, tuple[bytes, int]]:
    """Name → (file, the status it must get): the probe's bomb, its relatives, the largest image admitted."""
    largest = images.encode(Image.new("RGB", (7_071, 7_071)), "PNG")  # 50 megapixels, the pixel limit
    return {
        "PNG 1 x 49,999,999 (the probe's bomb)": (images.png_declaring(1, 49_999_999, every_row=True), 400),
        "PNG 49,999,999 x 1": (images.png_declaring(49_999_999, 1, every_row=True), 400),
        "PNG declaring 100,000 x 100,000": (images.png_declaring(100_000, 100_000), 400),
        "PNG 7,071 x 7,071 RGB (the largest admitted)": (largest, 202),
        "the same, cut short": (images.truncated(largest), 400),
    }


def resident_mb(pid: int) -> float:
    """A process's resident memory now (VmRSS), 0 once it has ended."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    kilobytes = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(kilobytes) / 1024


class Storm:
    """Sample every web process's RSS and time /healthz, in two threads, until stopped."""

    def __init__(self, base_url: str, processes: dict[int, str]):
        self.base_url, self.processes = base_url, processes
        self.peak_mb = dict.fromkeys(processes.values(), 0.0)
        self.healthz_ms: list[float] = []
        self.healthz_failures = 0
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self.sample), threading.Thread(target=self.probe)]

    def __enter__(self) -> "Storm":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join()

    def sample(self) -> None:
        while True:  # at least once, however short the storm
            for pid, name in self.processes.items():
                self.peak_mb[name] = max(self.peak_mb[name], resident_mb(pid))
            if self.done.wait(0.01):
                return

    def probe(self) -> None:
        while not self.done.is_set():
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=30) as response:
                    response.read()
            except OSError:
                self.healthz_failures += 1
            self.healthz_ms.append((time.perf_counter() - started) * 1000)
            time.sleep(0.005)


def storm(base_url: str, processes: dict[int, str], image: bytes, rounds: int) -> tuple[Storm, set[int]]:
    """`rounds` times, CONCURRENT uploads of `image` at once; return the measurements and the statuses seen."""
    statuses: set[int] = set()

    def send(_: int) -> int:
        fields = {"type": "thumbnail", "image": SimpleUploadedFile("image.png", image, "image/png")}
        return post_multipart(f"{base_url}/tasks", fields, timeout=120).status

    with Storm(base_url, processes) as measured, ThreadPoolExecutor(CONCURRENT) as pool:
        for _ in range(rounds):
            statuses.update(pool.map(send, range(CONCURRENT)))
    return measured, statuses


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def render(rows: list[tuple[str, int, int, Storm, set[int]]], at_rest: dict[str, float], rounds: int, host: str) -> str:
    every_peak = max(max(measured.peak_mb.values()) for *_, measured, _ in rows)
    every_ms = [ms for *_, measured, _ in rows for ms in measured.healthz_ms]
    names = ", ".join(at_rest)
    lines = [
        IMAGES,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {host}. "
        f"command: `make bench-images` (`python bench/image_bombs.py --rounds {rounds}`). "
        f"The production command and image environment of compose.yml ({WEB_WORKERS} uvicorn workers), DEBUG off, "
        f"rate limit off; {CONCURRENT} uploads at once, {rounds} rounds per image, /healthz timed back to back "
        f"meanwhile from the same client. Web processes at rest ({names}): "
        f"{', '.join(f'{mb:.0f}' for mb in at_rest.values())} MB.",
        "",
        f"| image | bytes | answers (expected) | peak RSS MB ({names}) | /healthz p50 / p95 / max ms | failed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, size, expected, measured, statuses in rows:
        peaks = ", ".join(f"{mb:.0f}" for mb in measured.peak_mb.values())
        ms = measured.healthz_ms
        timing = f"{statistics.median(ms):.1f} / {percentile(ms, 0.95):.1f} / {max(ms):.1f}"
        answers = ", ".join(str(status) for status in sorted(statuses))
        lines.append(
            f"| {name} | {size:,} | {answers} ({expected}) | {peaks} | {timing} | {measured.healthz_failures} |"
        )
    p95 = percentile(every_ms, 0.95)
    lines += [
        "",
        f"Targets: every web process under {RSS_TARGET_MB} MB: {every_peak:.0f} MB at most, "
        f"{'met' if every_peak < RSS_TARGET_MB else 'missed'}; /healthz under {HEALTHZ_TARGET_MS} ms: "
        f"p95 {p95:.1f} ms, max {max(every_ms):.1f} ms over {len(every_ms)} probes, "
        f"{'met' if max(every_ms) < HEALTHZ_TARGET_MS else 'missed'}.",
        "",
        HOW,
        "",
    ]
    if max(every_ms) >= HEALTHZ_TARGET_MS:
        lines += [HEALTHZ_MISSED, ""]
    return "\n".join(lines)


def machine() -> str:
    cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    load = ", ".join(f"{average:.1f}" for average in os.getloadavg())
    return (  # the load average: this benchmark's latencies depend on what else runs
        f"{os.cpu_count()} cores (nproc), {cpu.group(1) if cpu else 'unknown CPU'}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, Pillow {version('Pillow')}, uvicorn {version('uvicorn')}; "
        f"load average {load} when it started"
    )


@contextlib.contextmanager
def production_site(scratch: Path) -> Iterator[tuple[str, dict[int, str]]]:
    """The production command of compose.yml with a private Redis; yield its URL and its processes by pid."""
    with redis_server(scratch / "redis") as (redis_port, _):
        env = child_env(
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            DJANGO_SECURE_SSL_REDIRECT="false",
            DJANGO_MEDIA_ROOT=str(scratch / "media"),
            DJANGO_LOG_LEVEL="WARNING",
            TASKS_RATE_LIMIT="off",
        )
        env = production_env(env, scratch)
        web, base_url = start_asgi_server(
            env, scratch / "web.log", "--workers", str(WEB_WORKERS), *PRODUCTION_FLAGS, access_log=True
        )
        try:
            # The supervisor and its workers; not multiprocessing's resource tracker.
            workers = [
                pid for pid in descendants(web.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ]
            yield base_url, {web.pid: "supervisor", **{pid: f"worker {n}" for n, pid in enumerate(workers, 1)}}
        finally:
            stop(web)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of concurrent uploads per image")
    parser.add_argument("--output", default=str(Path(__file__).parent / "RESULTS.md"))
    args = parser.parse_args()
    # An ordinary upload first: the figures to compare with, and every process warmed up.
    kinds = {"PNG 320 x 200, ordinary (for comparison)": (images.png(), 202), **hostile_images()}
    rows, started_on = [], machine()
    with tempfile.TemporaryDirectory() as scratch, production_site(Path(scratch)) as (base_url, processes):
        settings.configure()  # Django's defaults, for its multipart encoder (child_env has read none)
        at_rest = {name: resident_mb(pid) for pid, name in processes.items()}
        for name, (image, expected) in kinds.items():
            measured, statuses = storm(base_url, processes, image, args.rounds)
            rows.append((name, len(image), expected, measured, statuses))
    section = render(rows, at_rest, args.rounds, started_on)
    write_section(IMAGES, section, Path(args.output))
    print(section)


if __name__ == "__main__":
    main()
