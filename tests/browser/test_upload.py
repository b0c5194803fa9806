"""The upload and email forms in a real browser: with fetch into the table, and without JavaScript."""

import re

import pytest
from playwright.sync_api import expect

from tests.integration.conftest import real_redis, redis_port, start_worker  # noqa: F401 - fixtures
from tests.support import images

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def worker(live_server_url, settings, tmp_path, start_worker):  # noqa: F811
    """One worker sharing MEDIA_ROOT with the live server; email stays in the worker's memory."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return start_worker(
        burst=False,
        DJANGO_MEDIA_ROOT=str(settings.MEDIA_ROOT),
        SITE_URL=live_server_url,
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    )


def image_file(data: bytes, name: str = "photo.png", mime: str = "image/png") -> dict:
    return {"name": name, "mimeType": mime, "buffer": data}


def test_an_uploaded_image_shows_its_thumbnail_in_the_row(live_server_url, page, worker):
    page.goto(live_server_url + "/")
    page.get_by_label("Image").set_input_files(image_file(images.png((320, 200))))
    page.get_by_role("button", name="Make thumbnails").click()

    rows = page.locator("#tasks tbody tr")
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row.locator('[data-field="type"]')).to_have_text("Thumbnails")
    expect(row.locator('[data-field="status"]')).to_have_text("finished", timeout=20_000)
    thumbnail = row.locator('[data-field="result"] img')
    expect(thumbnail).to_be_visible()
    expect(thumbnail).to_have_attribute(
        "src", re.compile(rf"^{re.escape(live_server_url)}/media/thumbnails/\w+-128\.png$")
    )
    # The browser really loaded it: the smallest size, 128 x 80 for a 320 x 200 image.
    assert thumbnail.evaluate("image => image.decode().then(() => [image.naturalWidth, image.naturalHeight])") == [
        128,
        80,
    ]
    expect(row.locator('[data-field="result"] a')).to_have_attribute("href", re.compile(r"-512\.png$"))
    expect(page.get_by_label("Image")).to_have_value("")  # the form is ready for the next image

    page.reload()  # remembered by this browser, thumbnail and all
    expect(page.locator("#tasks tbody tr [data-field='result'] img")).to_be_visible()


def test_a_refused_upload_is_explained_next_to_its_form(live_server_url, page, real_redis, settings):  # noqa: F811
    settings.THUMBNAIL_MAX_UPLOAD_BYTES = 4096
    posts = []
    page.on("request", lambda request: request.method == "POST" and posts.append(request.url))
    page.goto(live_server_url + "/")
    upload_form = page.locator("#thumbnail-form")

    page.get_by_label("Image").set_input_files(image_file(b"plain text, not a picture", "notes.png"))
    page.get_by_role("button", name="Make thumbnails").click()
    expect(upload_form.locator(".errorlist")).to_have_text("The file is not a JPEG, PNG, GIF or WebP image.")

    page.get_by_label("Image").set_input_files(image_file(images.truncated(images.jpeg()), "cut.jpg", "image/jpeg"))
    page.get_by_role("button", name="Make thumbnails").click()
    expect(upload_form.locator(".errorlist")).to_contain_text("damaged or incomplete")

    # Over the limit: refused in the browser, before a byte is sent.
    page.get_by_label("Image").set_input_files(image_file(images.noisy_png((200, 200))))
    page.get_by_role("button", name="Make thumbnails").click()
    expect(upload_form.locator(".errorlist")).to_have_text("The file is larger than the upload limit of 4 KiB.")
    assert len(posts) == 2
    expect(page.locator("#tasks tbody tr")).to_have_count(0)


def test_without_javascript_the_upload_leads_to_the_job_page_and_its_thumbnails(live_server_url, browser, worker):
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(live_server_url + "/")
        page.get_by_label("Image").set_input_files(image_file(images.jpeg((600, 400)), "photo.jpg", "image/jpeg"))
        page.get_by_role("button", name="Make thumbnails").click()
        expect(page).to_have_url(re.compile(r".*/jobs/[0-9a-f-]{36}\?token=[^&]+$"))
        expect(page.locator("#job-status")).to_have_text("finished", timeout=20_000)  # meta refresh
        expect(page.locator("#thumbnails img")).to_have_count(3)
        expect(page.locator("#thumbnails figcaption").last).to_have_text("512 px: 512 \u00d7 341")

        page.goto(live_server_url + "/")
        page.get_by_label("Image").set_input_files(image_file(b"GIF89a but nothing else", "broken.gif", "image/gif"))
        page.get_by_role("button", name="Make thumbnails").click()
        expect(page.locator("#thumbnail-form .errorlist")).to_contain_text("Image: The image is damaged or incomplete")
    finally:
        context.close()


def test_the_email_form_shows_errors_then_adds_a_row(live_server_url, page, worker):
    page.goto(live_server_url + "/")
    address = page.get_by_label("Email address")
    address.fill("someone@nowhere")  # the browser lets it through; the server does not
    page.get_by_role("button", name="Send confirmation email").click()
    expect(page.locator("#email-form .errorlist")).to_have_text("Enter a valid email address.")
    expect(page.locator("#tasks tbody tr")).to_have_count(0)

    address.fill("someone@example.org")
    page.get_by_role("button", name="Send confirmation email").click()
    row = page.locator("#tasks tbody tr").first
    expect(row.locator('[data-field="type"]')).to_have_text("Email")
    expect(row.locator('[data-field="status"]')).to_have_text("finished", timeout=20_000)
    expect(row.locator('[data-field="result"]')).to_have_text("Sent to someone@example.org")
    expect(page.locator("#email-form .errorlist")).to_be_hidden()
