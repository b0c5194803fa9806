"""A storage backend for tests: the file system, but full when a given file is written."""

import errno

from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage


class FullDiskStorage(FileSystemStorage):
    """Writes half of any file whose name ends with `fail_suffix`, then fails as a full disk does."""

    def __init__(self, fail_suffix: str = "-512.png", **options):
        super().__init__(**options)
        self.fail_suffix = fail_suffix

    def _save(self, name, content):
        if not name.endswith(self.fail_suffix):
            return super()._save(name, content)
        data = content.read()
        super()._save(name, ContentFile(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")
