"""The peer: the two views of the Flask tutorial (mjhea0/flask-redis-queue), restated for RQ 2.

`make bench` runs it under gunicorn with 2 sync workers beside the site; it is not shipped.
"""

import os
import time

from flask import Flask, jsonify, request
from redis import Redis
from rq import Queue

app = Flask(__name__)
# One pooled client for the process (the tutorial opened a connection per request, as RQ 1 did).
redis_client = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


def create_task(task_type):
    time.sleep(int(task_type) * 10)
    return True


@app.route("/tasks", methods=["POST"])
def run_task():
    task_type = request.form["type"]
    task = Queue(connection=redis_client).enqueue(create_task, task_type)
    return jsonify({"status": "success", "data": {"task_id": task.id}}), 202


@app.route("/tasks/<task_id>", methods=["GET"])
def get_status(task_id):
    task = Queue(connection=redis_client).fetch_job(task_id)
    if task:
        data = {"task_id": task.id, "task_status": task.get_status(), "task_result": task.return_value()}
        return jsonify({"status": "success", "data": data})
    return jsonify({"status": "error"})
