"""PostgreSQL-only tests: each module gets its own schema in the machine's PostgreSQL (CI starts
it), created with ``migrate`` and dropped afterwards.

``apps.app(url)`` writes an app module into the test's directory and returns ``(spec, app)``:
``spec`` for ``WorkerProcess`` (``module:app``, importable through ``env``), ``app`` a
producer-side app of the same name in this process. Its task ``mark(i, sleep=0)`` counts each run
of ``i`` in a Redis hash (the machine's Redis, database 10), which outlives a PostgreSQL restart,
so a test can tell a task that ran twice from one that ran once.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import psycopg
import pytest
import redis

from conftest import TESTS, WorkerProcess
from qtasks import QueueTasks
from qtasks.backends.postgres import migrate
from qtasks.configs import QueueConfig

POSTGRES = os.environ.get("QTASKS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SIDE = os.environ.get("QTASKS_TEST_SIDE_REDIS_URL", "redis://127.0.0.1:6379/10")

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
    side.hincrby({runs!r}, str(i), 1)
    return i
'''

_names = itertools.count()


def url_with(schema: str, base: str = POSTGRES) -> str:
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


@pytest.fixture(scope="module")
def pg_url():
    """A schema of this module's own, with the qtasks tables."""
    schema = f"qt_{os.getpid()}_{os.urandom(3).hex()}"
    url = url_with(schema)
    migrate(url)
    yield url
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def side():
    client = redis.Redis.from_url(SIDE, decode_responses=True)
    yield client
    client.close()


class Apps:
    def __init__(self, folder: Path, side: redis.Redis) -> None:
        self.folder = folder
        self.side = side
        self.workers: list[WorkerProcess] = []
        self.apps: list[QueueTasks] = []
        self.runs: list[str] = []

    def app(self, url: str, *, lease: float = 30.0) -> tuple[str, QueueTasks, str]:
        """``(spec, app, runs)``: ``runs`` is the Redis hash counting each task's runs."""
        index = next(_names)
        name, module = f"pgtest{index}", f"pg_app_{os.getpid()}_{index}"
        runs = f"runs:{module}:{os.urandom(3).hex()}"
        self.runs.append(runs)
        (self.folder / f"{module}.py").write_text(APP_MODULE.format(
            name=name, url=url, lease=lease, side=SIDE, runs=runs))
        app = QueueTasks(name=name, broker_url=url,
                         config=QueueConfig(visibility_timeout=lease, max_deliveries=5))
        self.apps.append(app)
        return f"{module}:app", app, runs

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
            app.flush_all()
            app.client.close()
        if self.runs:
            self.side.delete(*self.runs)


@pytest.fixture
def apps(tmp_path, side):
    folder = tmp_path / "apps"
    folder.mkdir()
    sys.path.insert(0, str(folder))
    helper = Apps(folder, side)
    yield helper
    helper.close()
    sys.path.remove(str(folder))
