"""``add_tasks`` on the test backend: every call checked before any is sent, the records
returned in order, and a worker running what was queued."""

import asyncio

import pytest

from apps import async_app, sync_app


def _app(flavour):
    return (sync_app if flavour == "sync" else async_app).app


def _call(app, method, *args):
    result = getattr(app, method)(*args)
    return asyncio.run(result) if asyncio.iscoroutine(result) else result


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_bulk_enqueue_returns_each_record_in_order_and_a_worker_runs_them(start_worker,
                                                                          flavour):
    module = sync_app if flavour == "sync" else async_app
    app = module.app
    _call(app, "flush_all")
    # more than one batch of the Redis backend (100 a call), pre-built calls and tuples mixed
    calls = [module.add(i, 1) if i % 2 else ("add", (i,), {"b": 2}) for i in range(250)]
    tasks = _call(app, "add_tasks", calls)
    assert [t.status for t in tasks] == ["new"] * 250
    assert [(t.task_name, t.args, t.kwargs) for t in tasks[:2]] == \
        [("add", (0,), {"b": 2}), ("add", (1, 1), {})]
    assert len({t.uuid for t in tasks}) == 250
    assert _call(app, "get", tasks[137].uuid).status == "new"
    assert _call(app, "stats").queued == 250
    start_worker(f"apps.{flavour}_app:app")
    records = [app.wait_sync(t.uuid, 60) for t in tasks]
    assert [r.returning for r in records] == [i + (1 if i % 2 else 2) for i in range(250)]


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_bad_call_anywhere_in_a_bulk_enqueue_queues_none_of_them(flavour):
    app = _app(flavour)
    _call(app, "flush_all")
    calls = [("add", (i,)) for i in range(250)]
    with pytest.raises(TypeError, match="positional argument 1"):
        _call(app, "add_tasks", [*calls[:200], ("add", (1, object())), *calls[200:]])
    with pytest.raises(ValueError, match="Task name is not specified"):
        _call(app, "add_tasks", [*calls, ("", ())])
    stats = _call(app, "stats")
    assert (stats.queued, stats.records) == (0, 0)
    assert _call(app, "add_tasks", []) == []
