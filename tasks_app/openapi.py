"""The OpenAPI 3.1 description of the JSON API (openapi.yaml), served at /openapi.json."""

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from tasks_app.forms import FORMS_BY_TYPE
from tasks_app.jobs import MAX_DELAY_SECONDS, TASK_TYPES


@cache
def document() -> dict[str, Any]:
    """Load the document and fill in the choices and limits the app defines."""
    loaded = yaml.safe_load((Path(__file__).parent / "openapi.yaml").read_text(encoding="utf-8"))
    # The file's aliases share these fields with every operation that takes a submission.
    fields = loaded["components"]["schemas"]["Submission"]["properties"]
    fields["type"]["enum"] = [*TASK_TYPES, *map(str, TASK_TYPES), *FORMS_BY_TYPE]
    fields["delay"]["maximum"] = MAX_DELAY_SECONDS
    fields["queue"]["enum"] = list(settings.TASK_QUEUES)
    return loaded
