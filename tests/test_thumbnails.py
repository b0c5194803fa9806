"""Thumbnails: POST /tasks with type=thumbnail, the page's upload form, the job's work and its cleanup.

fakeredis and an in-process worker; the files go to a temporary MEDIA_ROOT through Django's storage.
"""

import re
import zlib
from io import BytesIO
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from tasks_app import jobs
from tests.support import images
from tests.support.processes import PROJECT_ROOT
from tests.support.workers import InProcessJSONWorker


@pytest.fixture
def media(settings, tmp_path) -> Path:
    """An empty MEDIA_ROOT for the test, and the site's public address."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SITE_URL = "http://testserver/"
    return settings.MEDIA_ROOT


def stored_files(root: Path) -> list[str]:
    """Every file under MEDIA_ROOT (none when nothing ever created it)."""
    if not root.exists():
        return []
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def upload(data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg", **fields) -> dict:
    return {"type": "thumbnail", "image": SimpleUploadedFile(name, data, content_type=content_type), **fields}


def submit(data: bytes, **kwargs):
    return Client().post("/tasks", upload(data, **kwargs))


def run_jobs(connection) -> None:
    InProcessJSONWorker(["high", "default", "low"], connection=connection).work(burst=True)


def status(task_id: str) -> dict:
    response = Client().get(f"/tasks/{task_id}")
    assert response.status_code == 200, response.content
    return response.json()["data"]


def media_path(media: Path, url: str) -> Path:
    path = url.removeprefix("http://testserver/media/")
    assert path != url, f"{url} is not under MEDIA_URL"
    return media / path


# --- The happy path, one format at a time -------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type", "thumbnail_format"),
    [
        pytest.param(images.png(), "image/png", "PNG", id="PNG"),
        pytest.param(images.jpeg(), "image/jpeg", "JPEG", id="JPEG"),
        pytest.param(images.transparent_gif(), "image/gif", "PNG", id="GIF, thumbnails as PNG"),
        pytest.param(images.webp(), "image/webp", "WEBP", id="WebP"),
    ],
)
def test_an_upload_is_stored_and_the_job_makes_every_size(fake_redis, media, data, content_type, thumbnail_format):
    response = submit(data, content_type=content_type)
    assert response.status_code == 202, response.content
    task_id = response.json()["data"]["task_id"]

    # The job carries the stored name only: the bytes are in storage, not in Redis.
    job = Job.fetch(task_id, connection=fake_redis, serializer=JSONSerializer)
    assert job.func_name == "tasks_app.tasks.make_thumbnails"
    (stored_name,) = job.args
    assert re.fullmatch(r"uploads/[0-9a-f]{32}\.(png|jpg|gif|webp)", stored_name)
    assert (media / stored_name).read_bytes() == data
    assert len(zlib.decompress(fake_redis.hget(f"rq:job:{task_id}", "data"))) < 200
    assert status(task_id)["task_status"] == "queued"

    run_jobs(fake_redis)

    final = status(task_id)
    assert final["task_status"] == "finished", final
    assert final["progress"] == 100
    result = final["task_result"]
    source = images.opened(data)
    assert result["original"] == {"width": source.width, "height": source.height}
    assert not (media / stored_name).exists()  # never served: it keeps its metadata
    assert [thumbnail["size"] for thumbnail in result["thumbnails"]] == [128, 256, 512]
    for thumbnail in result["thumbnails"]:
        made = Image.open(media_path(media, thumbnail["url"]))
        assert made.format == thumbnail_format
        assert made.size == (thumbnail["width"], thumbnail["height"])
        assert max(made.size) == min(thumbnail["size"], max(source.size))  # fits, never enlarged
        assert abs(made.width / made.height - source.width / source.height) < 0.02  # proportions kept


def test_thumbnails_of_a_transparent_gif_stay_transparent(fake_redis, media):
    task_id = submit(images.transparent_gif(), content_type="image/gif").json()["data"]["task_id"]
    run_jobs(fake_redis)
    thumbnail = status(task_id)["task_result"]["thumbnails"][0]
    made = Image.open(media_path(media, thumbnail["url"]))
    assert made.mode == "RGBA"
    assert made.getpixel((0, 0))[3] == 0  # the corner is still see-through
    assert images.colour_at(made, made.width // 2, made.height // 2) == "red"


def test_exif_orientation_is_applied_to_the_thumbnails(fake_redis, media):
    """A photo stored landscape with Orientation=6 is portrait when viewed; so are its thumbnails."""
    data = images.rotated_jpeg((400, 200))
    task_id = submit(data).json()["data"]["task_id"]
    run_jobs(fake_redis)

    result = status(task_id)["task_result"]
    assert (result["original"]["width"], result["original"]["height"]) == (200, 400)
    for thumbnail in result["thumbnails"]:
        made = Image.open(media_path(media, thumbnail["url"]))
        assert made.height > made.width
        # Red was on the left of the stored pixels; turned upright it is on top.
        assert images.colour_at(made, made.width // 2, 2) == "red"
        assert images.colour_at(made, made.width // 2, made.height - 3) == "blue"
        assert images.ORIENTATION not in made.getexif()  # viewers must not turn it a second time


def test_configured_sizes_and_the_media_url_serve_the_files(fake_redis, media, settings):
    settings.THUMBNAIL_SIZES = [64, 100]
    task_id = submit(images.png((640, 320))).json()["data"]["task_id"]
    run_jobs(fake_redis)

    thumbnails = status(task_id)["task_result"]["thumbnails"]
    assert [(item["size"], item["width"], item["height"]) for item in thumbnails] == [(64, 64, 32), (100, 100, 50)]
    served = Client().get(thumbnails[1]["url"])
    assert served.status_code == 200
    assert served["Content-Type"] == "image/png"
    assert Image.open(BytesIO(b"".join(served.streaming_content))).size == (100, 50)


def test_the_thumbnail_kind_has_its_own_policy(fake_redis, media):
    task_id = submit(images.png()).json()["data"]["task_id"]
    job = Job.fetch(task_id, connection=fake_redis, serializer=JSONSerializer)
    assert job.meta["kind"] == "thumbnail"
    assert job.timeout == settings.TASK_POLICIES["thumbnail"]["timeout"]
    assert status(task_id)["max_attempts"] == settings.TASK_POLICIES["thumbnail"]["max_retries"] + 1


def test_queue_and_delay_apply_to_thumbnails_too(fake_redis, media):
    response = submit(images.png(), queue="high", delay="30")
    assert response.status_code == 202
    data = status(response.json()["data"]["task_id"])
    assert (data["queue"], data["task_status"]) == ("high", "scheduled")


# --- Bad input: 400 (or 413), the API's error shape, nothing stored ----------------------------


def assert_refused(response, status_code: int, media: Path, connection, message: str) -> dict:
    assert response.status_code == status_code, response.content
    body = response.json()
    assert body["status"] == "error"
    assert any(message in error for error in body["errors"]["image"]), body
    assert stored_files(media) == []
    assert all(Queue(name, connection=connection).count == 0 for name in ("high", "default", "low"))
    return body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"hello, I am a text file\n" * 20, "not a JPEG, PNG, GIF or WebP image", id="text"),
        pytest.param(b"%PDF-1.4\n" + bytes(range(256)) * 4, "not a JPEG, PNG, GIF or WebP image", id="PDF"),
        pytest.param(images.encode(images.two_colour(), "BMP"), "not a JPEG, PNG, GIF or WebP image", id="BMP"),
        pytest.param(images.truncated(images.jpeg()), "damaged or incomplete", id="truncated JPEG"),
        pytest.param(images.truncated(images.png()), "damaged or incomplete", id="truncated PNG"),
        pytest.param(images.truncated(images.png(), 0.98), "damaged or incomplete", id="PNG missing its end"),
        pytest.param(images.truncated(images.transparent_gif()), "damaged or incomplete", id="truncated GIF"),
        pytest.param(images.truncated(images.webp()), "damaged or incomplete", id="truncated WebP"),
        pytest.param(images.png()[:40], "damaged or incomplete", id="PNG header only"),
        pytest.param(images.png_declaring(20_000, 20_000), "decompression bomb", id="bomb Pillow refuses"),
    ],
)
def test_bad_images_are_refused_with_400(fake_redis, media, data, message):
    body = assert_refused(submit(data), 400, media, fake_redis, message)
    assert body["message"] == "The task could not be created: the input is invalid."


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_bomb_under_pillows_limit_is_refused_by_ours(fake_redis, media):
    """10000 x 10000 only makes Pillow warn; THUMBNAIL_MAX_PIXELS (50 megapixels) refuses it."""
    body = assert_refused(submit(images.png_declaring(10_000, 10_000)), 400, media, fake_redis, "decompression bomb")
    assert body["errors"]["image"] == [
        "The image declares 10000 x 10000 pixels, more than the limit of 50 megapixels; "
        "it is refused as a decompression bomb."
    ]


def test_the_pixel_limit_is_configurable(fake_redis, media, settings):
    settings.THUMBNAIL_MAX_PIXELS = 10_000
    assert_refused(submit(images.png((200, 100))), 400, media, fake_redis, "200 x 100 pixels")
    assert submit(images.png((100, 100))).status_code == 202


def test_an_upload_over_the_limit_is_refused_with_413(fake_redis, media, settings):
    settings.THUMBNAIL_MAX_UPLOAD_BYTES = 4096
    data = images.noisy_png((100, 100))
    assert 4096 < len(data) < settings.TASKS_MAX_BODY_BYTES
    body = assert_refused(submit(data), 413, media, fake_redis, "larger than the upload limit of 4 KiB")
    assert body["message"] == "The file is larger than the upload limit of 4 KiB."


def test_a_body_far_over_the_limit_is_refused_before_it_is_read(fake_redis, media, settings):
    settings.THUMBNAIL_MAX_UPLOAD_BYTES = 4096
    data = b"\0" * (4096 + settings.TASKS_MAX_BODY_BYTES + 1)
    body = assert_refused(submit(data), 413, media, fake_redis, "larger than the upload limit")
    assert body["errors"] == {"image": ["The file is larger than the upload limit of 4 KiB."]}


def test_an_oversized_file_is_dropped_while_parsing(settings, rf):
    """The upload handler stops storing a file at the limit; forms see a stand-in with its size."""
    from tasks_app.uploads import OversizedUpload, uploaded_files

    settings.THUMBNAIL_MAX_UPLOAD_BYTES = 1000
    request = rf.post("/tasks", {"type": "thumbnail", "image": SimpleUploadedFile("big.png", b"x" * 5000)})
    assert request.POST["type"] == "thumbnail"
    assert "image" not in request.FILES  # nothing of it was kept
    (stand_in,) = uploaded_files(request).getlist("image")
    assert isinstance(stand_in, OversizedUpload)
    assert stand_in.name == "big.png" and stand_in.size > 1000


def test_a_later_part_declared_too_large_leaves_the_image_before_it_intact(fake_redis, media):
    """A part's own Content-Length over the limit drops that part only; the image read before it is kept."""
    boundary = "XyZ"

    def part(headers: list[tuple[str, str]], body: bytes) -> bytes:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers)
        return f"--{boundary}\r\n{head}\r\n".encode() + body + b"\r\n"

    body = (
        part([("Content-Disposition", 'form-data; name="type"')], b"thumbnail")
        + part(
            [("Content-Disposition", 'form-data; name="image"; filename="a.png"'), ("Content-Type", "image/png")],
            images.noisy_png((40, 30)),
        )
        + part(
            [
                ("Content-Disposition", 'form-data; name="other"; filename="b.bin"'),
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", "999999999"),
            ],
            b"x",
        )
        + f"--{boundary}--\r\n".encode()
    )
    response = Client().generic("POST", "/tasks", body, content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 202, response.content


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"data": {"type": "thumbnail"}}, id="form without a file"),
        pytest.param({"data": {"type": "thumbnail", "image": "photo.jpg"}}, id="a text field, not a file"),
        pytest.param({"data": {"type": "thumbnail"}, "content_type": "application/json"}, id="JSON"),
        pytest.param({"data": upload(b"")}, id="empty file"),
    ],
)
def test_a_thumbnail_without_an_image_is_refused(fake_redis, media, kwargs):
    response = Client().post("/tasks", **kwargs)
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["image"]


def test_only_thumbnails_may_send_large_bodies(fake_redis, media):
    """A sleep task posted as a large multipart body is refused as before, even with a file in it."""
    response = Client().post("/tasks", {"type": "1", "image": SimpleUploadedFile("a.png", images.noisy_png())})
    assert response.status_code == 400
    assert response.json()["errors"]["type"] == ["The request body is larger than 16384 bytes."]
    assert stored_files(media) == []


def test_uploads_count_against_the_rate_limit_and_a_refused_one_is_not_stored(fake_redis, media, settings):
    settings.TASKS_RATE_LIMIT = "1/m"
    assert submit(images.png()).status_code == 202
    refused = submit(images.png())
    assert refused.status_code == 429
    assert refused["Retry-After"]
    assert len(stored_files(media)) == 1  # the first upload only


def test_a_full_queue_refuses_uploads_without_storing_them(fake_redis, media, settings):
    settings.TASKS_MAX_QUEUE_DEPTH = 1
    assert submit(images.png()).status_code == 202
    assert submit(images.png()).status_code == 503
    assert len(stored_files(media)) == 1


def test_redis_down_leaves_no_upload_behind(down_redis, media):
    response = submit(images.png())
    assert response.status_code == 503
    assert response["Retry-After"]
    assert stored_files(media) == []


# --- A job that does not finish leaves nothing in storage ----------------------------------------


@pytest.fixture
def full_disk(settings, media):
    """Storage that fails halfway through the 512 px thumbnail, after the smaller ones were written."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "tests.support.storage.FullDiskStorage", "OPTIONS": {"fail_suffix": "-512.png"}},
    }


def test_a_failed_job_deletes_its_thumbnails_and_its_upload(fake_redis, media, settings, full_disk, caplog):
    settings.TASK_POLICIES = {
        **settings.TASK_POLICIES,
        "thumbnail": {"timeout": 30, "max_retries": 0, "retry_intervals": []},
    }
    task_id = submit(images.png()).json()["data"]["task_id"]
    run_jobs(fake_redis)

    final = status(task_id)
    assert final["task_status"] == "failed"
    assert final["error"] == "OSError: [Errno 28] No space left on device"
    assert stored_files(media) == []  # neither the two whole thumbnails, the half one, nor the upload
    assert f"job_id={task_id} ended failed; discarded its upload" in caplog.text


def test_a_failed_attempt_that_will_be_retried_keeps_the_upload(fake_redis, media, settings, full_disk):
    settings.TASK_POLICIES = {
        **settings.TASK_POLICIES,
        "thumbnail": {"timeout": 30, "max_retries": 1, "retry_intervals": [60]},
    }
    task_id = submit(images.png()).json()["data"]["task_id"]
    run_jobs(fake_redis)

    assert status(task_id)["task_status"] == "scheduled"
    assert [path.split("/")[0] for path in stored_files(media)] == ["uploads"]  # no partial thumbnails


def test_cancelling_a_queued_thumbnail_job_deletes_its_upload(fake_redis, media):
    task_id = submit(images.png()).json()["data"]["task_id"]
    assert len(stored_files(media)) == 1
    assert (
        Client().post(f"/tasks/{task_id}/cancel", headers={"X-Cancel-Token": jobs.cancel_token(task_id)}).status_code
        == 200
    )
    assert stored_files(media) == []


# --- The page, without JavaScript ---------------------------------------------------------------


def page_client() -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    return client, client.get("/").cookies["csrftoken"].value


def test_a_thumbnail_job_whose_image_is_gone_is_not_requeued_to_fail_again(fake_redis, media):
    task_id = submit(images.png()).json()["data"]["task_id"]
    assert (
        Client().post(f"/tasks/{task_id}/cancel", headers={"X-Cancel-Token": jobs.cancel_token(task_id)}).status_code
        == 200
    )
    assert stored_files(media) == []  # the image went with the canceled job
    with pytest.raises(jobs.TaskStateConflict, match="its image was deleted when it ended canceled"):
        jobs.requeue_task(task_id)
    assert status(task_id)["task_status"] == "canceled"


def test_deleting_a_thumbnail_job_deletes_its_files(fake_redis, media):
    task_id = submit(images.png()).json()["data"]["task_id"]
    assert len(stored_files(media)) == 1
    assert jobs.delete_task(task_id) == "queued"
    assert stored_files(media) == []


def test_the_page_has_an_upload_form_that_works_without_javascript(fake_redis, media):
    client, token = page_client()
    html = client.get("/").content.decode()
    assert re.search(r'<form method="post" action="/" enctype="multipart/form-data" id="thumbnail-form"', html)
    assert '<input type="hidden" name="type" value="thumbnail">' in html
    assert 'accept="image/jpeg,image/png,image/gif,image/webp"' in html

    response = client.post("/", {**upload(images.jpeg()), "csrfmiddlewaretoken": token})
    assert response.status_code == 303
    task_id = re.fullmatch(r"/jobs/([0-9a-f-]{36})\?token=\S+", response["Location"]).group(1)
    run_jobs(fake_redis)

    page = client.get(response["Location"]).content.decode()
    assert 'id="job-status">finished<' in page
    for thumbnail in status(task_id)["task_result"]["thumbnails"]:
        assert f'<img src="{thumbnail["url"]}" width="{thumbnail["width"]}" height="{thumbnail["height"]}"' in page


def test_the_upload_form_needs_its_csrf_token(fake_redis, media):
    response = Client(enforce_csrf_checks=True).post("/", upload(images.png()))
    assert response.status_code == 403
    assert stored_files(media) == []


@pytest.mark.parametrize(
    ("data", "status_code", "message"),
    [
        (b"not an image at all", 400, "Image: The file is not a JPEG, PNG, GIF or WebP image."),
        (images.truncated(images.jpeg()), 400, "Image: The image is damaged or incomplete (truncated)"),
        (images.png_declaring(20_000, 20_000), 400, "refused as a decompression bomb"),
        (images.noisy_png(), 413, "Image: The file is larger than the upload limit of 4 KiB."),
    ],
)
def test_the_page_shows_why_an_upload_was_refused(fake_redis, media, settings, data, status_code, message):
    settings.THUMBNAIL_MAX_UPLOAD_BYTES = 4096
    client, token = page_client()
    response = client.post("/", {**upload(data), "csrfmiddlewaretoken": token})
    assert response.status_code == status_code
    html = response.content.decode()
    thumbnail_form = html[html.index('id="thumbnail-form"') : html.index('id="email-form"')]
    assert message in thumbnail_form
    assert 'role="alert"' in thumbnail_form
    assert stored_files(media) == []


# --- Settings and deployment --------------------------------------------------------------------


def test_compose_shares_one_media_volume_between_web_and_worker():
    compose = yaml.safe_load((PROJECT_ROOT / "compose.yml").read_text())
    for name in ("web", "worker"):
        service = compose["services"][name]
        root = service["environment"]["DJANGO_MEDIA_ROOT"]
        assert f"media:{root}" in service["volumes"]
    assert "media" in compose["volumes"]
    assert "mkdir -p /data /media" in (PROJECT_ROOT / "Dockerfile").read_text()  # owned by the app user


# --- Costly images: admitted before decoding, refused by their header -----------------------------


@pytest.fixture
def decodes(monkeypatch):
    """Every image Pillow decodes (ImageFile.load), here in the web process."""
    from PIL import ImageFile

    calls = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: calls.append(image.size) or load(image))
    return calls


def test_a_tall_thin_bomb_is_refused_by_its_header_without_decoding(fake_redis, media, decodes):
    """1 x 49,999,999 pixels is under the pixel limit, but decoding it costs gigabytes (a pointer a row)."""
    body = assert_refused(submit(images.png_declaring(1, 49_999_999)), 400, media, fake_redis, "decompression bomb")
    assert body["errors"]["image"] == [
        "The image declares 1 x 49999999 pixels, a side longer than the limit of 30000 pixels; "
        "it is refused as a decompression bomb."
    ]
    assert decodes == []


@pytest.mark.parametrize("limit", ["TASKS_RATE_LIMIT", "TASKS_MAX_QUEUE_DEPTH"])
def test_a_refused_request_decodes_nothing(fake_redis, media, settings, decodes, limit):
    setattr(settings, limit, "1/m" if limit == "TASKS_RATE_LIMIT" else 1)
    assert submit(images.png()).status_code == 202
    decodes.clear()

    assert submit(images.png()).status_code in (429, 503)
    assert decodes == []  # admission came first


def test_no_stored_file_keeps_the_photos_gps_position(fake_redis, media):
    from PIL import ExifTags

    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.GPSInfo).update({ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (52, 31, 0)})
    photo = images.encode(images.two_colour(), "JPEG", exif=exif.tobytes())
    assert images.opened(photo).getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the upload has a position
    task_id = submit(photo).json()["data"]["task_id"]

    run_jobs(fake_redis)

    assert status(task_id)["task_status"] == "finished"
    files = stored_files(media)
    assert files and all(name.startswith("thumbnails/") for name in files)
    for name in files:
        assert not Image.open(media / name).getexif().get_ifd(ExifTags.IFD.GPSInfo), name
