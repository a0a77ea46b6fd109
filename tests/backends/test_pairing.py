"""Choosing backends: the scheme registry, entry points, broker + store pairs, and a real
(in-process) worker on each backend."""

from __future__ import annotations

import sys
import textwrap

import pytest

from backends.conftest import ALL, Contract, urls_for
from qtasks import QueueTasks
from qtasks.backends import register_backend
from qtasks.backends.memory import MemoryBackend
from qtasks.exceptions import BackendError
from qtasks.testing.eager import ensure_worker, stop_worker


class BrokerOnly(MemoryBackend):
    """A queue that cannot keep records, like RabbitMQ or NATS."""

    stores_records = False

    def store_roles(self):
        raise BackendError("brokeronly:// keeps no records")


def test_a_broker_only_backend_needs_a_store_and_says_so(tmp_path):
    register_backend("brokeronly", lambda url, name, config: BrokerOnly(url, name=name))
    app = QueueTasks(name="bo", broker_url="brokeronly://bo")
    with pytest.raises(BackendError, match="storage_url"):
        app.add_task("x")
    paired = QueueTasks(name="bo2", broker_url="brokeronly://bo2",
                        storage_url=f"sqlite:///{tmp_path}/bo2.sqlite3")
    task = paired.add_task("x", 1)
    assert paired.get(task.uuid).status == "new"
    assert paired.stats().queued == 1


def test_the_store_url_can_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("QTASKS_STORAGE_URL", f"sqlite:///{tmp_path}/env-store.sqlite3")
    app = QueueTasks(name="envstore", broker_url="memory://envstore")
    assert "sqlite" in app.storage.describe() and "memory" in app.backend.describe()


def test_a_store_url_equal_to_the_broker_url_is_the_one_backend(tmp_path):
    url = f"sqlite:///{tmp_path}/same.sqlite3"
    app = QueueTasks(name="same", broker_url=url, storage_url=url)
    assert app.storage is app.backend  # one backend: the fused exchange, one transaction


def test_info_names_the_store_of_a_pair(tmp_path, capsys, monkeypatch):
    from qtasks.cli import main

    (tmp_path / "infopair_app.py").write_text(
        "from qtasks import QueueTasks\n"
        f"app = QueueTasks(name='infopair', broker_url='memory://infopair', "
        f"storage_url='sqlite:///{tmp_path}/infopair.sqlite3')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["-A", "infopair_app:app", "info"]) == 0
    out = capsys.readouterr().out
    assert "backend:      memory" in out
    assert "store:" in out and "sqlite" in out.split("store:")[1].splitlines()[0]


def test_an_unknown_scheme_lists_the_known_ones():
    with pytest.raises(BackendError, match=r"known schemes are .*memory://.*sqlite://"):
        QueueTasks(name="nope", broker_url="nope://host/").add_task("x")


def test_third_party_backends_register_through_entry_points(tmp_path, monkeypatch):
    (tmp_path / "fakeq_backend.py").write_text(textwrap.dedent("""
        from qtasks.backends.memory import MemoryBackend

        class FakeQ(MemoryBackend):
            def describe(self):
                return "fakeq, from an entry point"

        def make(url, name, config):
            return FakeQ("memory://" + url.partition("://")[2], name=name)
    """))
    info = tmp_path / "fakeq-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeq\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[qtasks.backends]\nfakeq = fakeq_backend:make\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    app = QueueTasks(name="ep", broker_url="fakeq://ep")
    assert app.backend.describe() == "fakeq, from an entry point"
    assert app.get(app.add_task("x").uuid).status == "new"
    sys.modules.pop("fakeq_backend", None)


@pytest.fixture(params=ALL)
def worker_app(request):
    contract = Contract(*urls_for(request, request.param))
    app = contract.app
    attempts = []

    @app.task(queue="emails", retry=1, retry_delay=0.05)
    def pairing_flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("first attempt fails")
        return "sent"

    @app.task(queue="emails")
    def pairing_double(x):
        return 2 * x

    ensure_worker(app, queues=["emails"])  # nothing serves "default"
    yield app
    stop_worker(app)
    contract.close()


def test_a_real_worker_runs_tasks_on_every_backend(worker_app):
    assert worker_app.add_task("pairing_double", 21, timeout=10).returning == 42
    records = worker_app.add_tasks([("pairing_double", (i,)) for i in range(50)])
    assert [worker_app.wait_sync(r.uuid, 10).returning for r in records] == \
        [2 * i for i in range(50)]


def test_a_retried_task_stays_in_its_queue(worker_app):
    # The next attempt goes back to "emails", not "default" (where no worker might look).
    final = worker_app.add_task("pairing_flaky", timeout=10)
    assert (final.status, final.returning) == ("success", "sent")
