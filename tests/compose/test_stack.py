"""The tutorial's workflow for real: build the image, `compose up --scale worker=3`, use it, `down`.

Runs podman and podman-compose (no Docker engine here) in a network namespace the test makes, so
the containers' bridge never touches the host's network. `make test-compose` runs it; see
docs/deployment.md for what podman-compose does differently from Docker Compose.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.support.images import png
from tests.support.processes import PROJECT_ROOT, wait_until

pytestmark = [pytest.mark.compose, pytest.mark.integration]

HERE = Path(__file__).resolve().parent
WORKERS = 3


def run(*args: str, timeout: float = 120, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and done.returncode:
        raise AssertionError(
            f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return done


class Stack:
    """podman-compose commands, curl and podman inside the test's network namespace."""

    def __init__(self, directory: Path, project: str, namespace: str, env: dict[str, str]):
        self.directory, self.project, self.namespace, self.env = directory, project, namespace, env

    def inside(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
        return run(
            "nsenter",
            f"--net=/run/netns/{self.namespace}",
            *args,
            timeout=timeout,
            check=check,
            env=self.env,
            cwd=self.directory,
        )

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        return self.inside("podman-compose", "-p", self.project, *args, timeout=timeout, check=check)

    def containers(self, service: str | None = None, all_states: bool = True) -> list[dict]:
        label = f"label=io.podman.compose.project={self.project}"
        args = ["podman", "ps", "--format", "json", "--filter", label]
        if service:
            args += ["--filter", f"label=io.podman.compose.service={service}"]
        if all_states:
            args.append("--all")
        return json.loads(self.inside(*args).stdout or "[]")

    def healthy(self, container: str) -> bool:
        # podman 4.3 runs healthchecks from systemd timers; without systemd the test runs them.
        return self.inside("podman", "healthcheck", "run", container, check=False, timeout=60).returncode == 0

    def curl(self, *args: str) -> subprocess.CompletedProcess:
        return self.inside("curl", "-sS", "--max-time", "10", *args, check=False, timeout=30)

    def get_json(self, path: str) -> dict:
        answer = self.curl(f"http://127.0.0.1:{self.env['WEB_PORT']}{path}")
        return json.loads(answer.stdout) if answer.returncode == 0 and answer.stdout.startswith("{") else {}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    for tool in ("podman", "podman-compose", "debootstrap", "ip", "curl"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: run `make test-compose`, which installs it")
    work = tmp_path_factory.mktemp("compose")
    conf = work / "containers.conf"
    hard_nofile = run("sh", "-c", "ulimit -Hn").stdout.strip()
    # Root here lacks CAP_SYS_RESOURCE (no raising limits past the hard one), and crun refuses
    # this machine's cgroup layout.
    conf.write_text(
        f'[containers]\ndefault_ulimits = ["nofile={hard_nofile}:{hard_nofile}", "nproc=32768:32768"]\n'
        '[engine]\nruntime = "runc"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(conf), "WEB_PORT": "8000"}
    cache = Path(os.environ.get("COMPOSE_TEST_CACHE", "/var/tmp/taskqueue-compose"))
    run(str(HERE / "stand_in_images.sh"), str(cache), env=env, timeout=900)

    # A copy of the tracked files, with a .env of the test's own; the checkout stays untouched.
    project_dir = work / "project"
    files = run("git", "ls-files", "-z", cwd=PROJECT_ROOT).stdout.split("\0")
    for name in filter(None, files):
        if (PROJECT_ROOT / name).is_file():
            (project_dir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, project_dir / name)
    (project_dir / ".env").write_text(
        "DJANGO_SECRET_KEY=compose-test-" + uuid.uuid4().hex + "\n"
        "DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost\n"
        "DJANGO_SECURE_SSL_REDIRECT=false\n"
        "SITE_URL=http://127.0.0.1:8000\n"
        "TASK_UNIT_SECONDS=0.5\n"
        "TASKS_RATE_LIMIT=off\n"
    )
    # The image, built from the unchanged Dockerfile; builds reach PyPI on the host's network.
    build = run(
        "podman",
        "build",
        "--pull=never",
        "--network",
        "host",
        "-t",
        "taskqueue:latest",
        ".",
        cwd=project_dir,
        env=env,
        timeout=900,
        check=False,
    )
    assert build.returncode == 0, f"the image did not build:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"

    project = f"tqc{uuid.uuid4().hex[:8]}"
    namespace = f"{project}-ns"
    run("ip", "netns", "add", namespace)
    stack = Stack(project_dir, project, namespace, env)
    try:
        stack.inside("ip", "link", "set", "lo", "up")
        yield stack
    finally:
        with contextlib.suppress(Exception):
            for container in stack.containers():
                stack.inside("podman", "rm", "-f", "-t", "0", container["Id"], check=False, timeout=60)
            stack.compose("down", "--remove-orphans", "-v", check=False, timeout=120)
            for kind in ("pod", "network", "volume"):
                names = stack.inside("podman", kind, "ls", "--format", "{{.Name}}", check=False).stdout.split()
                for name in (n for n in names if n.startswith(project)):
                    stack.inside("podman", kind, "rm", "-f", name, check=False, timeout=60)
        run("ip", "netns", "delete", namespace, check=False)


def test_the_compose_stack_builds_runs_scales_restarts_and_goes_away(stack):
    # podman-compose ignores `condition: service_healthy` and only waits for migrate to stop, and
    # podman applies restart policies only to containers started without dependencies: so the
    # stack starts in phases, each checked here.
    stack.compose("up", "-d", "--no-build", "redis")
    redis = stack.containers("redis")[0]["Names"][0]
    wait_until(lambda: stack.healthy(redis), 60, "redis to be healthy", interval=1)

    stack.compose("up", "-d", "--no-build", "--no-deps", "migrate")
    migrate = stack.containers("migrate")[0]["Names"][0]
    stack.inside("podman", "wait", migrate, timeout=180)
    state = json.loads(stack.inside("podman", "inspect", migrate).stdout)[0]["State"]
    assert state["ExitCode"] == 0, stack.inside("podman", "logs", migrate, check=False).stdout[-3000:]

    stack.compose("up", "-d", "--no-build", "--no-deps", "--scale", f"worker={WORKERS}", "web", "worker", "scheduler")
    workers = [c["Names"][0] for c in stack.containers("worker")]
    web = stack.containers("web")[0]["Names"][0]
    scheduler = stack.containers("scheduler")[0]["Names"][0]
    assert len(workers) == WORKERS
    for name in [web, *workers]:
        wait_until(lambda name=name: stack.healthy(name), 120, f"{name} to be healthy", interval=2)

    health = wait_until(
        lambda: (data := stack.get_json("/healthz").get("data")) and data["workers"] == WORKERS and data,
        60,
        f"/healthz to count {WORKERS} workers",
        interval=1,
    )
    assert health["redis"] == "ok"

    # A task, run by one of the workers, and a delayed one, which the scheduler queues when due.
    task_ids = []
    for delay in ("0", "1"):
        created = json.loads(stack.curl("-F", "type=1", "-F", f"delay={delay}", "http://127.0.0.1:8000/tasks").stdout)
        task_ids.append(created["data"]["task_id"])
    for task_id in task_ids:
        wait_until(
            lambda task_id=task_id: (
                stack.get_json(f"/tasks/{task_id}").get("data", {}).get("task_status") == "finished"
            ),
            60,
            f"task {task_id} to finish",
            interval=1,
        )

    # A thumbnail made by a worker, served by web from the shared media volume.
    image = stack.directory / "upload.png"
    image.write_bytes(png())
    created = json.loads(
        stack.curl("-F", "type=thumbnail", "-F", f"image=@{image};type=image/png", "http://127.0.0.1:8000/tasks").stdout
    )
    thumb_id = created["data"]["task_id"]
    result = wait_until(
        lambda: (
            (data := stack.get_json(f"/tasks/{thumb_id}").get("data", {})).get("task_status") == "finished"
            and data["task_result"]
        ),
        60,
        "the thumbnail job to finish",
        interval=1,
    )
    url = result["thumbnails"][0]["url"]
    served = stack.curl("-o", "/dev/null", "-w", "%{http_code} %{content_type}", url)
    assert served.stdout.split()[0] == "200", served
    assert served.stdout.split()[1].startswith("image/")

    # A worker killed outright is restarted by its restart policy.
    victim = workers[0]
    before = json.loads(stack.inside("podman", "inspect", victim).stdout)[0]["State"]
    # From the host, as a crash or the OOM killer would: `podman kill` counts as stopped by the user.
    os.kill(before["Pid"], signal.SIGKILL)

    def restarted() -> bool:
        now = json.loads(stack.inside("podman", "inspect", victim).stdout)[0]["State"]
        return now["Running"] and now["StartedAt"] != before["StartedAt"]

    wait_until(restarted, 60, "the killed worker to be restarted", interval=1)
    wait_until(lambda: stack.healthy(victim), 120, "the restarted worker to be healthy", interval=2)

    # Down: podman-compose knows only the scale-1 containers, so stop the scaled ones first.
    # All at once, as `docker compose down` stops a project's containers.
    began = time.monotonic()
    stack.inside("podman", "stop", "-t", "40", web, scheduler, *workers, timeout=90)
    stopped = time.monotonic() - began
    stack.compose("down", "--remove-orphans", "-v", timeout=120)
    took = f"stop {stopped:.1f} s, then down {time.monotonic() - began - stopped:.1f} s"
    assert time.monotonic() - began < 60, f"down took a minute or more ({took}): workers slow to stop?"
    assert stack.containers() == []
    for kind in ("pod", "network", "volume"):
        left = stack.inside("podman", kind, "ls", "--format", "{{.Name}}").stdout.split()
        assert [name for name in left if name.startswith(stack.project)] == [], kind
