"""echo=True: the task handle and its context, bound to the worker's app; nested tasks."""

import pytest

from flavours import FLAVOURS, Client


@pytest.fixture(params=["sync", "async"])
def flavour(request):
    client = Client(FLAVOURS[request.param])
    client.flush()
    return client


def test_ctx_is_bound_to_the_app(flavour, start_worker):
    start_worker(flavour.spec)
    record = flavour.add("who", timeout=10)
    assert record.status == "success", record.traceback
    handle_type = "AsyncTask" if flavour.is_async else "SyncTask"
    app_name = flavour.app.name
    assert record.returning == [str(record.uuid), "who", "QueueConfig", "process", "QueueConfig",
                                f"qtasks.{app_name}.who", handle_type]


def test_ctx_cancel(flavour, start_worker):
    start_worker(flavour.spec)
    record = flavour.add("self_cancel", "Test task cancelled", timeout=10)
    assert (record.status, record.cancel_reason) == ("cancel", "Test task cancelled")


def test_parents_waiting_on_children_do_not_deadlock_the_worker(flavour, start_worker):
    # two slots, six parents: without lending, two waiting parents would hold both slots
    start_worker(flavour.spec, "--concurrency", "2")
    parents = [flavour.add("parent", i) for i in range(6)]
    results = [flavour.wait(p.uuid, 60) for p in parents]
    assert [r.status for r in results] == ["success"] * 6
    assert [r.returning for r in results] == [i * 10 for i in range(6)]
