"""Uploaded images and their thumbnails, through Django's storage API.

The web checks and stores an upload; the job reads it back and writes one thumbnail per size.
Nothing half-made stays in storage: a failed attempt deletes its thumbnails, and a job that ends
without finishing takes its upload with it.
"""

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urljoin

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, ImageOps, UnidentifiedImageError

from tasks_app.status import REQUEUABLE_STATUSES

logger = logging.getLogger(__name__)

# Pillow's name of each accepted format → the extension of stored uploads. Image.open() tries
# these parsers only, so untrusted bytes never reach the others.
UPLOAD_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}
# Thumbnails keep their source's format, except GIF (256 colours): PNG keeps its transparency.
THUMBNAIL_FORMATS = {"jpg": ("JPEG", "jpg"), "png": ("PNG", "png"), "gif": ("PNG", "png"), "webp": ("WEBP", "webp")}
SAVE_OPTIONS = {"JPEG": {"quality": 85, "optimize": True}, "PNG": {"optimize": True}, "WEBP": {"quality": 80}}
UPLOAD_DIR = "uploads"
THUMBNAIL_DIR = "thumbnails"

# Pillow keeps a pointer per row: a tall thin image costs memory that its pixel count hides.
MAX_SIDE = 30_000
# One decode at a time in a process: a legitimate image may still take hundreds of megabytes.
DECODING = threading.BoundedSemaphore(1)
NOT_AN_IMAGE = "The file is not a JPEG, PNG, GIF or WebP image."
DAMAGED = "The image is damaged or incomplete (truncated): it cannot be decoded."


class ImageRejected(Exception):
    """An upload that cannot be made into thumbnails; `code` says why (too_large, not_an_image, ...)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CheckedImage:
    """An upload that passed check_upload(), and its format."""

    file: File
    format: str


def describe_bytes(count: int) -> str:
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if count >= factor:
            return f"{count / factor:.4g} {unit}"
    return f"{count} bytes"


def too_large_message() -> str:
    return f"The file is larger than the upload limit of {describe_bytes(settings.THUMBNAIL_MAX_UPLOAD_BYTES)}."


def check_upload(upload: File) -> CheckedImage:
    """Refuse an upload by its size and header alone: too large, not an accepted image, or a bomb."""
    if upload.size > settings.THUMBNAIL_MAX_UPLOAD_BYTES:
        raise ImageRejected(too_large_message(), "too_large")
    with open_image(upload) as image:
        return CheckedImage(upload, image.format)


def check_decodes(checked: CheckedImage) -> None:
    """Refuse a damaged or truncated image by decoding it; call it once the request is admitted."""
    # verify() checks the structure; load() decodes, which finds a file cut short. A verified
    # image cannot be loaded, hence two opens.
    with DECODING:
        with open_image(checked.file) as image:
            decode_or_reject(image.verify)
        with open_image(checked.file) as image:
            decode_or_reject(image.load)
    checked.file.seek(0)


def open_image(file: File) -> Image.Image:
    """Open an image lazily (header only), refusing other formats and too many pixels."""
    file.seek(0)
    try:
        image = Image.open(file, formats=list(UPLOAD_EXTENSIONS))
    except Image.DecompressionBombError:
        raise ImageRejected(pixel_limit_message(), "too_many_pixels") from None
    except UnidentifiedImageError:
        if has_accepted_signature(file):  # the start of a real image whose header is cut short
            raise ImageRejected(DAMAGED, "damaged") from None
        raise ImageRejected(NOT_AN_IMAGE, "not_an_image") from None
    except Exception:  # a broken header: Pillow's parsers raise many kinds of errors
        raise ImageRejected(DAMAGED, "damaged") from None
    if image.width * image.height > settings.THUMBNAIL_MAX_PIXELS or max(image.size) > MAX_SIDE:
        image.close()
        raise ImageRejected(pixel_limit_message(image.width, image.height), "too_many_pixels")
    return image


def has_accepted_signature(file: File) -> bool:
    """Whether a file starts like a JPEG, PNG, GIF or WebP image."""
    file.seek(0)
    head = file.read(12)
    return head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")) or (
        head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    )


def pixel_limit_message(width: int | None = None, height: int | None = None) -> str:
    limit = f"{settings.THUMBNAIL_MAX_PIXELS / 1_000_000:g} megapixels"
    declared = f"{width} x {height} pixels, more than" if width else "more pixels than"
    if width and max(width, height) > MAX_SIDE:
        declared, limit = f"{width} x {height} pixels, a side longer than", f"{MAX_SIDE} pixels"
    return f"The image declares {declared} the limit of {limit}; it is refused as a decompression bomb."


def decode_or_reject(decode: Callable[[], Any]) -> None:
    try:
        decode()
    except Exception:  # truncated data, bad checksums, decoder errors of every kind
        raise ImageRejected(DAMAGED, "damaged") from None


def store_upload(checked: CheckedImage) -> str:
    """Save a checked upload under a fresh, unguessable name; return the name in storage."""
    name = f"{UPLOAD_DIR}/{uuid.uuid4().hex}.{UPLOAD_EXTENSIONS[checked.format]}"
    try:
        return default_storage.save(name, checked.file)
    except BaseException:
        delete_quietly(name)  # a disk that filled up mid-write leaves a partial file
        raise


def thumbnail_name(upload_name: str, size: int) -> str:
    path = PurePosixPath(upload_name)
    _, extension = THUMBNAIL_FORMATS[path.suffix.lstrip(".")]
    return f"{THUMBNAIL_DIR}/{path.stem}-{size}.{extension}"


def public_url(name: str) -> str:
    """An absolute URL of a stored file (storage URLs are often site-relative)."""
    return urljoin(settings.SITE_URL, default_storage.url(name))


def make_thumbnails(upload_name: str, report_progress: Callable[[int], None] = lambda percent: None) -> dict:
    """Write a thumbnail per configured size of a stored upload; return the URLs and pixel sizes."""
    written: list[str] = []
    try:
        with default_storage.open(upload_name, "rb") as source, open_image(source) as image:
            decode_or_reject(image.load)
            upright = ImageOps.exif_transpose(image)  # the camera's rotation, applied to the pixels
        report_progress(10)
        image_format, _ = THUMBNAIL_FORMATS[PurePosixPath(upload_name).suffix.lstrip(".")]
        mode = "RGBA" if upright.has_transparency_data else "RGB"
        working = upright if upright.mode == mode else upright.convert(mode)
        thumbnails = []
        for index, size in enumerate(settings.THUMBNAIL_SIZES, start=1):
            thumbnail = working.copy()
            thumbnail.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)  # never enlarges
            name = thumbnail_name(upload_name, size)
            delete_quietly(name)  # left by an attempt that was killed: save() would pick another name
            written.append(name)  # before saving, so that a partly written file is deleted too
            written[-1] = default_storage.save(name, ContentFile(encode(thumbnail, image_format)))
            thumbnails.append(
                {"size": size, "url": public_url(written[-1]), "width": thumbnail.width, "height": thumbnail.height}
            )
            report_progress(10 + 90 * index // len(settings.THUMBNAIL_SIZES))
    except BaseException:
        for name in written:
            delete_quietly(name)
        raise
    # The original keeps its metadata (EXIF GPS position included): it is never served, only the thumbnails.
    delete_quietly(upload_name)
    logger.info("thumbnails made upload=%s sizes=%s", upload_name, settings.THUMBNAIL_SIZES)
    return {"original": {"width": upright.width, "height": upright.height}, "thumbnails": thumbnails}


def encode(image: Image.Image, image_format: str) -> bytes:
    """Encode a thumbnail with its colour profile but no EXIF (no GPS position, no rotation tag)."""
    buffer = BytesIO()
    image.save(buffer, format=image_format, icc_profile=image.info.get("icc_profile"), **SAVE_OPTIONS[image_format])
    return buffer.getvalue()


def discard(upload_name: str) -> None:
    for name in [upload_name, *(thumbnail_name(upload_name, size) for size in settings.THUMBNAIL_SIZES)]:
        delete_quietly(name)


def delete_quietly(name: str) -> None:
    """Delete a stored file if it exists; a cleanup that fails is logged, never raised."""
    try:
        if default_storage.exists(name):
            default_storage.delete(name)
    except Exception:
        logger.exception("could not delete %s from storage", name)


def upload_of(job) -> str | None:
    return job.meta.get("upload") if job.meta.get("kind") == "thumbnail" else None


def discard_files_of_unfinished_job(sender, job, status: str, **kwargs) -> None:
    """Receiver of signals.job_status_changed: a thumbnail job that will never finish leaves no files."""
    if status in REQUEUABLE_STATUSES and (upload := upload_of(job)):
        discard(upload)
        logger.info("job_id=%s ended %s; discarded its upload %s", job.id, status, upload)
