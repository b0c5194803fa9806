"""Thumbnails over HTTP, made by a real `manage.py rqworker` that shares only Redis and MEDIA_ROOT."""

import json
import urllib.request

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageOps

from tests.support import images
from tests.support.http import task_status
from tests.support.multipart import post_multipart


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def worker_env(live_server, media) -> dict[str, str]:
    """What a worker on another host is told: where the shared files are, and the site's address."""
    return {"DJANGO_MEDIA_ROOT": str(media), "SITE_URL": live_server.url}


def stored_files(root) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()) if root.exists() else []


def upload(base_url: str, data: bytes, name: str) -> str:
    reply = post_multipart(f"{base_url}/tasks", {"type": "thumbnail", "image": SimpleUploadedFile(name, data)})
    assert reply.status == 202, reply.body
    return reply.body["data"]["task_id"]


def fetch_image(url: str) -> Image.Image:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("image/")
        return images.opened(response.read())


def test_a_worker_makes_thumbnails_of_every_format(live_server, media, start_worker, worker_env):
    uploads = {
        "photo.png": images.png(),
        "photo.jpg": images.jpeg(),
        "anim.gif": images.transparent_gif(),
        "photo.webp": images.webp(),
        "portrait.jpg": images.rotated_jpeg((400, 200)),
    }
    task_ids = {name: upload(live_server.url, data, name) for name, data in uploads.items()}
    assert len(stored_files(media)) == len(uploads)  # the web stored the uploads, nothing else yet

    assert start_worker(**worker_env).wait(timeout=60) == 0

    for name, task_id in task_ids.items():
        data = task_status(live_server.url, task_id)
        assert data["task_status"] == "finished", (name, data)
        result = data["task_result"]
        source = images.opened(uploads[name])
        upright = ImageOps.exif_transpose(source)
        assert result["original"] == {"width": upright.width, "height": upright.height}
        assert [thumbnail["size"] for thumbnail in result["thumbnails"]] == [128, 256, 512]
        for thumbnail in result["thumbnails"]:
            # Absolute URLs on SITE_URL, served from the storage the worker wrote to.
            assert thumbnail["url"].startswith(f"{live_server.url}/media/thumbnails/")
            made = fetch_image(thumbnail["url"])
            assert made.size == (thumbnail["width"], thumbnail["height"])
            assert max(made.size) == min(thumbnail["size"], max(source.size))

    portrait = task_status(live_server.url, task_ids["portrait.jpg"])["task_result"]["thumbnails"][-1]
    made = fetch_image(portrait["url"])
    assert (made.width, made.height) == (200, 400)
    assert images.colour_at(made, 100, 5) == "red"
    assert images.colour_at(made, 100, 394) == "blue"
    assert len(stored_files(media)) == len(uploads) * 3  # three thumbnails each; no original is kept


def test_bad_uploads_over_http_store_nothing(live_server, media, real_redis, settings):
    settings.THUMBNAIL_MAX_UPLOAD_BYTES = 4096
    cases = [
        (b"just text", 400, "not a JPEG, PNG, GIF or WebP image"),
        (images.truncated(images.jpeg()), 400, "damaged or incomplete"),
        (images.png_declaring(30_000, 30_000), 400, "decompression bomb"),
        (images.noisy_png((100, 100)), 413, "larger than the upload limit of 4 KiB"),
        (images.noisy_png((300, 300)), 413, "larger than the upload limit of 4 KiB"),  # refused unread
    ]
    for data, status, message in cases:
        reply = post_multipart(
            f"{live_server.url}/tasks", {"type": "thumbnail", "image": SimpleUploadedFile("x", data)}
        )
        assert reply.status == status, reply.body
        assert message in reply.body["errors"]["image"][0]
    assert stored_files(media) == []
    assert real_redis.connection.keys("rq:job:*") == []


def test_a_job_that_fails_in_the_worker_leaves_no_files(live_server, media, start_worker, worker_env, settings):
    """The worker's storage fills up while writing the largest thumbnail: nothing half-made stays."""
    settings.TASK_POLICIES = {
        **settings.TASK_POLICIES,
        "thumbnail": {"timeout": 30, "max_retries": 0, "retry_intervals": []},
    }
    task_id = upload(live_server.url, images.jpeg(), "photo.jpg")
    worker = start_worker(
        **worker_env,
        DJANGO_STORAGE_BACKEND="tests.support.storage.FullDiskStorage",
        DJANGO_STORAGE_OPTIONS=json.dumps({"fail_suffix": "-512.jpg"}),
    )
    assert worker.wait(timeout=60) == 0
    data = task_status(live_server.url, task_id)
    assert data["task_status"] == "failed"
    assert data["error"] == "OSError: [Errno 28] No space left on device"
    assert stored_files(media) == []


def test_an_upload_over_the_default_limit_is_refused(live_server, media, real_redis):
    """The default limit is 10 MiB: an 11 MiB upload gets 413 and is never written anywhere."""
    data = b"\x89PNG\r\n\x1a\n" + b"\0" * (11 * 1024 * 1024)
    image = SimpleUploadedFile("big.png", data)
    reply = post_multipart(f"{live_server.url}/tasks", {"type": "thumbnail", "image": image}, timeout=30)
    assert reply.status == 413
    assert reply.body["message"] == "The file is larger than the upload limit of 10 MiB."
    assert stored_files(media) == []
