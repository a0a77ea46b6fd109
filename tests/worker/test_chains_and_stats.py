"""Pre-built calls, chains and introspection, in both flavours."""

import asyncio
import json

import pytest

from flavours import FLAVOURS, Client
from helpers import run_cli
from qtasks.chains import AsyncTaskCls
from qtasks.stats import AsyncStats, SyncStats
from qtasks.utils import AsyncTaskUtils, SyncTaskUtils


@pytest.fixture(params=["sync", "async"])
def client(request, start_worker):
    c = Client(FLAVOURS[request.param])
    c.flush()
    start_worker(c.spec)
    return c


def test_chain_passes_each_result_on(client):
    add = client.module.add
    if client.is_async:
        prebuilt = add(2, 3, timeout=10)
        assert isinstance(prebuilt, AsyncTaskCls)
        assert asyncio.run(prebuilt.add_task()).returning == 5
        chain = AsyncTaskUtils.chain(add(2, 2), add(4), add(8))
        records = asyncio.run(chain.get(timeout=10))
    else:
        assert add(2, 3, timeout=10).add_task().returning == 5
        records = SyncTaskUtils.chain(add(2, 2), add(4), add(8)).get(timeout=10)
    assert [r.returning for r in records] == [4, 8, 16]


def test_chain_stops_at_a_failed_link(client):
    mod = client.module
    if client.is_async:
        records = asyncio.run(AsyncTaskUtils.chain(mod.add(1), mod.error_task(),
                                                   mod.add(5)).get(timeout=10))
    else:
        records = SyncTaskUtils.chain(mod.add(1), mod.error_task(), mod.add(5)).get(timeout=10)
    assert records[0].returning == 1
    assert records[1].status == "error"
    assert records[2] is None


def test_stats_inspect(client):
    if client.is_async:
        inspected = asyncio.run(AsyncStats(client.app).inspect())
    else:
        inspected = SyncStats(client.app).inspect()
    tasks = json.loads(inspected.tasks(json=True))
    assert "test" in [t["name"] for t in tasks]
    app_info = json.loads(inspected.app(json=True))
    assert app_info["Name"] == client.app.name and app_info["Tasks Count"] == len(client.app.tasks)
    assert app_info["Workers"] == 1
    assert "priority" in inspected.task("flaky") and "retry" in inspected.task("flaky")
    assert json.loads(inspected.task("flaky", json=True))["retry"] == 2
    with pytest.raises(KeyError):
        inspected.task("nope")
    assert inspected.tasks("nope") == "No registered tasks."


def test_stats_cli(client):
    run = run_cli("-A", client.spec, "stats", "inspect", "app", "json=true")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["Name"] == client.app.name and "Tasks Count" in data
    assert data["Workers"] == 1  # the command saw the test's worker through the backend
    run = run_cli("-A", client.spec, "stats", "inspect", "task", "add", "json=true")
    assert json.loads(run.stdout)["name"] == "add"
