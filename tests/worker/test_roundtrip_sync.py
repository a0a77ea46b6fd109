"""The sync app against a real worker on the test backend."""

from uuid import UUID, uuid4

import pytest

from apps.sync_app import add, app, router_late, router_task
from apps.sync_app import test as user_task
from helpers import wait_until
from qtasks import Task, TaskStatusEnum


@pytest.fixture
def worker(start_worker):
    app.flush_all()
    return start_worker("apps.sync_app:app")


def test_round_trip_by_name_and_by_handle(worker):
    by_name = app.add_task("test", 5, timeout=10)
    assert by_name.status == "success"
    assert by_name.returning == "User 5 recorded"
    assert add.add_task(1, b=2, timeout=10).returning == 3
    assert add(2, 3).add_task().status == "new"


def test_fire_and_forget_then_get(worker):
    task = app.add_task("test", 5)
    assert isinstance(task, Task)
    assert task.status == TaskStatusEnum.NEW
    assert task.task_name == "test"
    assert task.args == (5,)
    assert task.kwargs == {}
    assert isinstance(task.uuid, UUID)
    final = wait_until(lambda: (t := app.get(task.uuid)) and t.status == "success" and t,
                       what="task to finish")
    assert final.returning == "User 5 recorded"
    assert final.args == (5,)
    assert app.get(str(task.uuid)) == final


def test_error_record_has_traceback(worker):
    record = app.add_task("error_task", timeout=10)
    assert record.status == "error"
    assert "ZeroDivisionError" in record.traceback


def test_get_unknown_uuid_is_none(worker):
    assert app.get(str(uuid4())) is None
    assert app.get(uuid4()) is None
    with pytest.raises(ValueError):
        app.get("not-a-uuid")


def test_wait_timeout_returns_none_while_task_still_finishes(worker):
    assert app.add_task("sleepy", 1.0, timeout=0.1) is None
    record = wait_until(lambda: [t for t in _records("sleepy") if t.status == "success"],
                        what="the slow task to finish")
    assert record[0].status == "success"


def _records(name):
    # every record the store has for this task name, read back through app.get
    return [app.get(row["uuid"]) for row in app.client.search(task_name=name, limit=1000)]


def test_router_tasks_including_ones_added_after_include(worker):
    assert "router_task" in app.tasks and "router_late" in app.tasks
    assert router_task.add_task(timeout=10).returning == "router"
    assert router_late.add_task(timeout=10).returning == "late"


def test_per_call_priority_is_kept_in_the_final_record(worker):
    record = user_task.add_task(1, priority=7, timeout=10)
    assert record.status == "success"
    assert record.priority == 7


def test_unencodable_result_is_an_error_record_and_dead_letter(worker):
    record = app.add_task("unencodable", timeout=10)
    assert record.status == "error"
    assert "not JSON-serialisable" in record.traceback
    letters = app.client.dead_letters()
    assert [d.uuid for d in letters] == [str(record.uuid)]


def test_unknown_task_name_is_dead_lettered_and_worker_keeps_going(worker):
    record = app.add_task("no_such_task", 1, timeout=10)
    assert record.status == "error"
    assert "not registered" in record.traceback
    assert app.add_task("test", 1, timeout=10).status == "success"
    assert worker.alive


def test_ping_true_while_worker_alive(worker):
    assert app.ping() is True
    assert app.ping(server=False) is True


def test_wait_result_on_the_record(worker):
    task = app.add_task("add", 2, 2)
    assert task.wait_result(timeout=10).returning == 4


def test_system_exit_inside_a_task_is_that_tasks_error(worker):
    record = app.add_task("exits", timeout=10)
    assert record.status == "error" and "SystemExit: 4" in record.traceback
    assert app.add_task("add", 1, 1, timeout=10).returning == 2


def test_a_result_that_cannot_be_stored_becomes_an_error_record_and_others_proceed(worker):
    # a lone surrogate: JSON can write it, no store can keep it (the codec refuses it; a value
    # only the store refuses takes the ResultStorageError path: tests/backends/test_contract.py)
    bad = app.add_task("surrogate")
    good = [app.add_task("add", i, 1) for i in range(5)]
    record = app.wait_sync(bad.uuid, 10)
    assert record.status == "error" and "lone surrogate" in record.traceback
    assert record.extra["exception"] == "qtasks.exceptions.ResultEncodingError"
    assert [app.wait_sync(t.uuid, 10).returning for t in good] == [1, 2, 3, 4, 5]
    assert str(bad.uuid) in [d.uuid for d in app.client.dead_letters()]
