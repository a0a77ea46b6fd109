"""QTasks-style projects (tests/qtasks_projects/) run unchanged: ``python app.py`` as the worker,
``python producer.py`` beside it, each a separate process, as QTasks' documentation runs them.

They use the embedded default backend (nothing in the projects names one); the sync project
runs once more with ``QTASKS_BROKER_URL`` pointing at a private Redis.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PROJECTS = Path(__file__).parent / "qtasks_projects"

EXPECTED = {
    "sync_app": [
        "square 49",
        "relay square gave 16",
        "shout HI",
        "total 6",
        "count [0, 10, 20]",
        "describe [pen=3] True",
        "divide error True",
        "missing None",
        "tasks count,describe,divide,relay,shout,square,total",
        "inspect True",
    ],
    "async_app": [
        "add 5",
        "pipeline 20",
        "too_slow error True",
        "stop_here cancel not today",
        "plain -4",
        "stream [0, 2, 4]",
        "gather 380",
        "fresh new",
        "inspect True",
    ],
    "task_objects": [
        "objects [(2, 3), (3, 4), (10, 5)]",
        "gathered [5, 7, 15]",
        "chain [4, 8, 16]",
    ],
    "depends": ["first conn-1 charged 6", "second conn-2 charged 15"],
    # an executor class and a middleware from the project's libs; a worker object with its
    # own max_tasks_process (2) run by a starter
    "components": ["greet {'args': 1, 'result': 'hello ada'}", "at once 2"],
    "plugins": ["fragile success rescued a plugin decides producer"],
    "states": ["ask asked", "got Your phone number? 555", "again out of order"],
}


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("QTASKS_") and k != "PYTHONPATH"}
    env.update(extra)
    return env


def run_project(name: str, folder: Path, env: dict[str, str] | None = None) -> tuple[str, str]:
    """Copy the project, start its worker, run its producer; return both outputs."""
    project = folder / name
    shutil.copytree(PROJECTS / name, project)
    environment = _env(env or {})
    worker = subprocess.Popen([sys.executable, "app.py"], cwd=project, env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        producer = subprocess.run([sys.executable, "producer.py"], cwd=project,
                                  env=environment, capture_output=True, text=True, timeout=120)
    finally:
        worker.send_signal(signal.SIGTERM)  # drain, then stop
        try:
            worker_output, _ = worker.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker_output, _ = worker.communicate()
    assert producer.returncode == 0, f"producer failed:\n{producer.stderr}\n{worker_output}"
    assert worker.returncode == 0, f"worker exited {worker.returncode}:\n{worker_output}"
    return producer.stdout, worker_output


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_project_runs_unchanged(name, tmp_path):
    output, worker_output = run_project(name, tmp_path)
    assert output.splitlines() == EXPECTED[name], worker_output
    if name == "depends":  # each task-scoped connection was closed after its task
        assert worker_output.count("closed") == 2


@pytest.mark.slow
def test_the_sync_project_runs_on_redis(tmp_path):
    from redis_servers import RedisServer

    server = RedisServer(tmp_path / "redis", "--appendonly", "no")
    try:
        output, worker_output = run_project("sync_app", tmp_path,
                                            {"QTASKS_BROKER_URL": server.url})
        assert output.splitlines() == EXPECTED["sync_app"], worker_output
        assert not (tmp_path / "sync_app" / ".qtasks").exists()  # nothing went to SQLite
    finally:
        server.stop()
