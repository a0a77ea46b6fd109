"""Depends, State and pydantic arguments through real workers, in both flavours."""

import pytest

from apps import ainject_app, inject_app
from flavours import Client
from helpers import clear_marks, marks, wait_until


@pytest.fixture(params=["sync", "async"])
def client(request):
    c = Client(inject_app if request.param == "sync" else ainject_app)
    c.flush()
    clear_marks()
    return c


def test_depends_value_and_cleanup_after_the_task(client, start_worker):
    start_worker(client.spec)
    assert client.add("uses_number", 1, timeout=10).returning == 124
    wait_until(lambda: "dep closed" in marks(), what="the dependency's cleanup")
    seen = marks()
    assert seen.index("dep open") < seen.index("task ran") < seen.index("dep closed")


def test_task_scoped_dependencies_are_per_task(client, start_worker):
    start_worker(client.spec, "--concurrency", "4")
    slow = client.add("holds_resource", 0.6)
    fast = [client.add("holds_resource", 0.0) for _ in range(3)]
    # the fast tasks finished (and closed their resources) while the slow one still ran
    assert [client.wait(t.uuid).returning for t in fast] == [False] * 3
    assert client.wait(slow.uuid).returning is False


def test_worker_scoped_dependency_is_made_once_and_closed_at_stop(client, start_worker):
    worker = start_worker(client.spec)
    assert [client.add("uses_shared", timeout=10).returning for _ in range(3)] == ["client"] * 3
    assert marks().count("shared made") == 1
    worker.stop()
    assert "shared closed" in marks()


def test_state_is_shared_by_the_tasks_of_a_worker(client, start_worker):
    start_worker(client.spec)
    first = client.add("step1", timeout=10)
    assert first.returning == {"state": "await_phone", "step": 1, "prompt": "Send your phone"}
    second = client.add("step2", timeout=10)
    assert second.returning == [{"state": "await_phone", "step": 1,
                                 "prompt": "Send your phone"}, {}]


def test_pydantic_model_from_positional_and_keyword_arguments(client, start_worker):
    start_worker(client.spec)
    for args, kwargs in [(("Test",), {"value": 42}), (("Test", 42), {}),
                         ((), {"name": "Test", "value": 42})]:
        record = client.add("hello", *args, timeout=10, **kwargs)
        assert (record.status, record.returning) == ("success", "Hello, Test!"), record.traceback
    bad = client.add("hello", "Test", value="not a number", timeout=10)
    assert bad.status == "error" and "ValidationError" in bad.traceback
    assert client.add("item_back", "x", 1, timeout=10).returning == {"name": "x", "value": 1}
