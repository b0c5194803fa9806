"""POST multipart/form-data (fields and files) to a real server, as curl -F does."""

import urllib.request

from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from tests.support.http import Reply, send


def post_multipart(url: str, fields: dict, timeout: float = 10) -> Reply:
    """Send fields (values with a .name and .read(), such as SimpleUploadedFile, become files)."""
    body = encode_multipart(BOUNDARY, fields)
    headers = {"Content-Type": MULTIPART_CONTENT, "Accept": "application/json"}
    return send(urllib.request.Request(url, data=body, method="POST", headers=headers), timeout)
