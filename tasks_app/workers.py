"""The RQ worker class that `manage.py rqworker` runs (settings.RQ["WORKER_CLASS"])."""

from rq import Worker
from rq.serializers import JSONSerializer


class JSONWorker(Worker):
    """A worker that always reads and writes jobs as JSON.

    django-rq's `rqworker` passes `--serializer` (pickle by default) straight to the worker,
    whatever RQ_QUEUES says. Ignoring that argument keeps the plain command safe: a job
    written to Redis as pickle is refused instead of being unpickled.
    """

    def __init__(self, *args, serializer=None, **kwargs):
        super().__init__(*args, serializer=JSONSerializer, **kwargs)
