"""Eager mode, the QTasks test cases and the pytest fixtures, on in-process workers."""

import asyncio
import time

import pytest

from qtasks import QueueConfig, QueueTasks
from qtasks.asyncio import QueueTasks as AsyncQueueTasks
from qtasks.schemas.test import TestConfig
from qtasks.tests import AsyncTestCase, SyncTestCase


def make_app(name, cls=QueueTasks, **config):
    app = cls(name=name, broker_url=f"memory://{name}", config=QueueConfig(**config))

    @app.task(name="test")
    def test(id):
        return f"User {id} recorded"

    @app.task(name="error_task")
    def error_task():
        return 1 / 0

    @app.task(name="a_set")
    def a_set():
        return {1}

    return app


def test_eager_mode_runs_at_once_with_production_errors():
    app = make_app("eager", eager=True)
    try:
        record = app.add_task("test", 5)
        assert (record.status, record.returning) == ("success", "User 5 recorded")
        assert app.add_task("error_task").status == "error"
        assert "ResultEncodingError" in app.add_task("a_set").traceback
        with pytest.raises(TypeError, match="positional argument 0"):
            app.add_task("test", object())
        assert app.get(record.uuid).status == "success"
    finally:
        app.stop()


def test_eager_from_environment(monkeypatch):
    monkeypatch.setenv("QTASKS_EAGER", "1")
    assert QueueConfig().eager is True


def test_sync_test_case_full_runs_tasks_on_the_apps_backend(tmp_path):
    app = QueueTasks(name="case-full", broker_url=f"sqlite:///{tmp_path}/case.sqlite3")

    @app.task(name="test")
    def test(id):
        return f"User {id} recorded"

    case = SyncTestCase(app=app)
    case.settings(TestConfig.full())
    try:
        record = case.add_task("test", 5, timeout=10)
        assert (record.status, record.returning) == ("success", "User 5 recorded")
        assert case.get(record.uuid) == app.get(record.uuid)
    finally:
        case.stop()


def test_default_test_config_adds_nothing(caplog):
    case = SyncTestCase(app=make_app("case-none"))
    case.settings()
    assert case.add_task("test", 5) is None
    assert "neither a broker nor a worker" in caplog.text
    case.stop()


def test_only_worker_uses_a_private_backend_and_restores_it():
    app = make_app("case-worker")
    own = app.backend
    case = SyncTestCase(app=app)
    case.settings(TestConfig.only_worker())
    try:
        assert app.backend is not own
        assert case.add_task("test", 7, timeout=10).returning == "User 7 recorded"
    finally:
        case.stop()
    assert app.backend is own


def test_only_broker_enqueues_without_running():
    app = make_app("case-broker")
    case = SyncTestCase(app=app)
    case.settings(TestConfig.only_broker())
    task = case.add_task("test", 1)
    time.sleep(0.2)
    assert case.get(task.uuid).status == "new"
    case.stop()


def test_async_test_case():
    app = make_app("case-async", cls=AsyncQueueTasks)
    case = AsyncTestCase(app=app)
    case.settings(TestConfig.full(), awaiting=True)

    async def scenario():
        record = await case.add_task("test", 5, timeout=10)
        return record, await case.get(record.uuid)

    try:
        record, again = asyncio.run(scenario())
    finally:
        case.stop()
    assert record.status == "success" and again == record


def test_qtasks_eager_fixture(qtasks_eager):
    app = qtasks_eager(make_app("fixture-eager"))
    assert app.add_task("test", 3).returning == "User 3 recorded"


def test_qtasks_worker_fixture(qtasks_worker):
    app = make_app("fixture-worker")
    qtasks_worker(app, concurrency=2)
    assert app.add_task("test", 4, timeout=10).returning == "User 4 recorded"
    assert app.ping()
