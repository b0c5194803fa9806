"""Worker classes that count how many times each job runs, for reconciliation in bench/load.py."""

from tasks_app.workers import InProcessJSONWorker, JSONWorker

EXECUTIONS_KEY = "bench:executions"


class CountingMixin:
    def perform_job(self, job, queue):
        self.connection.hincrby(EXECUTIONS_KEY, job.id, 1)
        return super().perform_job(job, queue)


class CountingWorker(CountingMixin, JSONWorker):
    """The default forking worker, counting executions."""


class CountingInProcessWorker(CountingMixin, InProcessJSONWorker):
    """The in-process worker, counting executions."""
