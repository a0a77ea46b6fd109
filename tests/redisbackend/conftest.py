"""Redis-only tests: each gets private servers (redis_servers) and worker processes.

``redis_app(url, name)`` writes an app module into the test's directory and returns
``(spec, app)``: ``spec`` for ``WorkerProcess`` (``module:app``, importable through ``env``),
``app`` a producer-side app of the same name in this process. Its task ``mark(i, sleep=0)``
counts each run of ``i`` in the hash ``runs`` of the side-effect Redis, so a test can tell a
task that ran twice from one that ran once.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from conftest import TESTS, WorkerProcess
from qtasks import QueueTasks
from qtasks.configs import QueueConfig
from redis_servers import RedisServer

APP_MODULE = '''\
import time

import redis

from qtasks import QueueTasks
from qtasks.configs import QueueConfig

app = QueueTasks(name={name!r}, broker_url={url!r},
                 config=QueueConfig(visibility_timeout={lease!r}, max_deliveries=5))
side = redis.Redis.from_url({side!r})


@app.task(name="mark")
def mark(i, sleep=0.0):
    if sleep:
        time.sleep(sleep)
    side.hincrby("runs", str(i), 1)
    return i
'''

_modules = itertools.count()


@pytest.fixture
def redis_server(tmp_path):
    """A private server with no persistence; stopped after the test."""
    server = RedisServer(tmp_path / "redis", "--appendonly", "no")
    yield server
    server.stop()


class Apps:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.workers: list[WorkerProcess] = []
        self.apps: list[QueueTasks] = []

    def app(self, url: str, name: str = "redistest", *, side: str | None = None,
            lease: float = 30.0) -> tuple[str, QueueTasks]:
        module = f"redis_app_{next(_modules)}"
        (self.folder / f"{module}.py").write_text(APP_MODULE.format(
            name=name, url=url, lease=lease, side=side or url))
        app = QueueTasks(name=name, broker_url=url,
                         config=QueueConfig(visibility_timeout=lease, max_deliveries=5))
        self.apps.append(app)
        return f"{module}:app", app

    def worker(self, spec: str, *args: str, ready: bool = True) -> WorkerProcess:
        env = {"PYTHONPATH": f"{self.folder}:{TESTS}"}
        worker = WorkerProcess(spec, *args, env=env)
        self.workers.append(worker)
        if ready:
            worker.wait_ready()
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for app in self.apps:
            app.client.close()


@pytest.fixture
def apps(tmp_path):
    folder = tmp_path / "apps"
    folder.mkdir()
    sys.path.insert(0, str(folder))
    helper = Apps(folder)
    yield helper
    helper.close()
    sys.path.remove(str(folder))
