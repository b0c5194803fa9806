"""A cap on uploaded files while Django parses a request (first in settings.FILE_UPLOAD_HANDLERS).

Django limits form fields but not files, and spools an upload of any size to disk. A file past
THUMBNAIL_MAX_UPLOAD_BYTES is dropped and read to its end; the view gets a stand-in knowing only its
size, which forms refuse like any oversized upload (413).
"""

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest
from django.utils.datastructures import MultiValueDict


class OversizedUpload(UploadedFile):
    """Stands for a file that was dropped for its size; it has a name and a size, no content."""

    def __init__(self, field_name: str, name: str, content_type: str | None, size: int):
        super().__init__(file=None, name=name, content_type=content_type, size=size)
        self.field_name = field_name


class UploadLimitHandler(FileUploadHandler):
    """Drop any uploaded file larger than THUMBNAIL_MAX_UPLOAD_BYTES, remembering that it came."""

    def __init__(self, request: HttpRequest | None = None):
        super().__init__(request)
        self.limit = settings.THUMBNAIL_MAX_UPLOAD_BYTES
        self.dropped: list[OversizedUpload] = []
        self.received = 0
        self.declared_length: int | None = None

    def new_file(self, field_name, file_name, content_type, content_length, charset=None, content_type_extra=None):
        super().new_file(field_name, file_name, content_type, content_length, charset, content_type_extra)
        self.received = 0
        # A part whose own header declares it too large is dropped at its first chunk, not here:
        # the parser's cleanup after a skip closes each handler's current file, and here the
        # storing handlers still hold the previous part's (an image the view is about to read).
        self.declared_length = content_length

    @property
    def declared_too_large(self) -> bool:
        return self.declared_length is not None and self.declared_length > self.limit

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.declared_too_large or self.received > self.limit:
            self.drop(max(self.received, self.declared_length or 0))
            raise SkipFile  # the parser closes what the storing handlers wrote so far and discards the rest
        return raw_data

    def file_complete(self, file_size: int) -> None:
        if self.declared_too_large:  # declared too large but empty: no chunk came to drop it
            self.drop(self.declared_length)
        return None  # the next handler stores the file

    def drop(self, size: int) -> None:
        self.dropped.append(OversizedUpload(self.field_name, self.file_name, self.content_type, size))


def uploaded_files(request: HttpRequest) -> MultiValueDict:
    """The request's files, with a stand-in (OversizedUpload) for each one dropped for its size."""
    if request.content_type != "multipart/form-data":
        # Only multipart bodies carry files; asking Django would build its upload handlers anyway.
        return MultiValueDict()
    files = request.FILES.copy()
    for handler in request.upload_handlers:
        if isinstance(handler, UploadLimitHandler):
            for dropped in handler.dropped:
                files.setlist(dropped.field_name, [dropped])
    return files
