"""The backends every contract test runs against: each URL pair is one parameter.

A new backend joins by adding its URLs here (or through ``QTASKS_TEST_BROKER_URL``): the same
tests then hold it to the same contract.
"""

from __future__ import annotations

import asyncio
import itertools
import os

import pytest

from qtasks import QueueTasks

_names = itertools.count()

# The shared Redis of the machine (CI starts it); each run has its own key prefix, and each app
# its own hash tag, so runs and tests never see each other's keys.
REDIS = os.environ.get("QTASKS_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
_RUN = f"t{os.getpid()}x{os.urandom(3).hex()}"
_REDIS = f"{REDIS}{'&' if '?' in REDIS else '?'}prefix={_RUN}"

# The machine's PostgreSQL (CI starts it); each run has its own schema, dropped at the end.
POSTGRES = os.environ.get("QTASKS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_POSTGRES = f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}schema=qtasks_{_RUN}"

BACKENDS = {
    "sqlite": ("sqlite:///{dir}/contract-{name}.sqlite3", None),
    "memory": ("memory://contract-{name}", None),
    "memory+sqlite": ("memory://contract-{name}", "sqlite:///{dir}/contract-{name}.sqlite3"),
    "redis": (_REDIS, None),
    "redis+sqlite": (_REDIS, "sqlite:///{dir}/contract-{name}.sqlite3"),
    "memory+redis": ("memory://contract-{name}", _REDIS),
    "postgres": (_POSTGRES, None),
    "postgres+sqlite": (_POSTGRES, "sqlite:///{dir}/contract-{name}.sqlite3"),
    "memory+postgres": ("memory://contract-{name}", _POSTGRES),
}
extra = os.environ.get("QTASKS_TEST_BROKER_URL")
if extra and extra not in {b for b, _ in BACKENDS.values()}:
    BACKENDS["env"] = (extra, os.environ.get("QTASKS_TEST_STORAGE_URL") or None)


class Contract:
    """One fresh app on the backend under test, and helpers to drive its transport."""

    def __init__(self, broker: str, storage: str | None) -> None:
        name = f"c{next(_names)}"
        folder = os.environ["QTASKS_TEST_DIR"]
        self.app = QueueTasks(name=name, broker_url=broker.format(dir=folder, name=name),
                              storage_url=storage.format(dir=folder, name=name) if storage
                              else None)
        self.loop = asyncio.new_event_loop()

    @property
    def transport(self):
        return self.app.transport

    @property
    def client(self):
        return self.app.client

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def new(self, name="job", *args, priority=0, queue="default", eta=None, **kwargs):
        return self.app._prepare(name, args, kwargs, priority, eta, queue)

    def enqueue(self, *tasks):
        self.run(self.transport.enqueue(list(tasks)))
        return tasks

    def exchange(self, worker="w1", queues=("default",), limit=10, lease=30.0, **kw):
        return self.run(self.transport.exchange(worker, queues, limit=limit, lease=lease, **kw))

    def fetch(self, worker="w1", queues=("default",), limit=10, lease=30.0, start=0,
              block=0.0):
        return self.exchange(worker, queues, limit, lease, start=start,
                             block=block).deliveries

    def close(self):
        self.run(self.transport.flush())  # leave nothing behind in a shared server
        self.run(self.transport.close())
        self.loop.close()


# Backends whose servers a session fixture starts (tests/conftest.py): the URL is known then.
STARTED = {"redis-cluster": "redis_cluster", "redis-sentinel": "redis_sentinel"}
ALL = [*BACKENDS, *STARTED]


@pytest.fixture(scope="session")
def postgres_schema():
    """This run's PostgreSQL schema: created on first use, dropped at the end."""
    from qtasks.backends.postgres import migrate

    migrate(_POSTGRES)
    yield _POSTGRES
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS qtasks_{_RUN} CASCADE")


def urls_for(request, name: str) -> tuple[str, str | None]:
    """The (broker, storage) URL templates of backend ``name``, starting its servers if need be."""
    if "postgres" in name:
        request.getfixturevalue("postgres_schema")
    if name in STARTED:
        server = request.getfixturevalue(STARTED[name])
        return f"{server.url}?prefix={_RUN}", None
    return BACKENDS[name]


@pytest.fixture(params=ALL)
def contract(request):
    c = Contract(*urls_for(request, request.param))
    yield c
    c.close()
