"""A worker that runs jobs in the test's own process (no fork), so they see its fakes and database."""

from rq import SimpleWorker

from tasks_app.workers import JSONWorkerOptions


class InProcessJSONWorker(JSONWorkerOptions, SimpleWorker):
    """The site's worker options, running jobs in this process; it keeps RQ's started-registry TTL."""
