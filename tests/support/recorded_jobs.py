"""A job that records each execution in Redis, so tests can count how often every job ran."""

import json
import os
import time

from rq import get_current_job


def record_execution(list_key: str, seconds: float) -> bool:
    """Append {job_id, worker, pid} to a Redis list, then take `seconds` like real work."""
    job = get_current_job()
    entry = {"job_id": job.id, "worker": job.worker_name, "pid": os.getpid()}
    job.connection.rpush(list_key, json.dumps(entry))
    time.sleep(seconds)
    return True
