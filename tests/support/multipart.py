"""POST multipart/form-data (fields and files) to a real server, as curl -F does."""

import json
import urllib.error
import urllib.request

from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from tests.support.http import Reply


def post_multipart(url: str, fields: dict, timeout: float = 10) -> Reply:
    """Send fields (file-like values with a .name become files) and read the JSON answer."""
    body = encode_multipart(BOUNDARY, fields)
    headers = {"Content-Type": MULTIPART_CONTENT, "Accept": "application/json"}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, json.loads(response.read()), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Reply(error.code, json.loads(error.read()), dict(error.headers))
