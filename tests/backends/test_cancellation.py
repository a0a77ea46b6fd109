"""A worker's idle fetch is cancelled whenever a task or a stop wakes it. What a cancelled call
had already taken is handed over by the next call, and that hand-over survives being
cancelled too: nothing a fetch claimed is stranded (leased, but seen by no one)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from qtasks import QueueTasks
from qtasks.backends.memory import MemoryBroker, MemoryStore
from qtasks.backends.transport import Transport

QUEUES = ("default",)


async def _cancelled(call):
    task = asyncio.ensure_future(call)
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _twice_cancelled_then_fetched(transport, hold):
    """``hold()`` keeps the backend busy while two fetches in a row are cancelled."""
    busy = asyncio.ensure_future(hold())
    await _cancelled(transport.exchange("w", QUEUES, limit=5, lease=30.0, start=5, block=5.0))
    # the second call waits for what the first one took, and is cancelled while it waits
    await _cancelled(transport.exchange("w", QUEUES, limit=5, lease=30.0, start=5, block=5.0))
    await busy
    return await transport.exchange("w", QUEUES, limit=5, lease=30.0, start=5, block=1.0)


def test_sqlite_hand_over_survives_a_second_cancel(tmp_path: Path, monkeypatch):
    from qtasks.backends.sqlite import store

    real = store.exchange

    def slow_exchange(*args):  # the transaction has claimed; its answer takes 0.3 s more
        result = real(*args)
        time.sleep(0.3)
        return result

    monkeypatch.setattr(store, "exchange", slow_exchange)
    app = QueueTasks("cancel2", broker_url=f"sqlite:///{tmp_path}/cancel2.sqlite3")
    (task,) = app.add_tasks([("job", (1,))])

    async def scenario():
        return await _twice_cancelled_then_fetched(app.transport, lambda: asyncio.sleep(0.3))

    result = asyncio.run(scenario())
    assert [d.uuid for d in result.deliveries] == [str(task.uuid)]


class SlowStore(MemoryStore):
    """A store whose 'mark running' takes a while (a remote store under load)."""

    async def mark_running(self, deliveries):
        await asyncio.sleep(0.3)
        return await super().mark_running(deliveries)


def test_split_pair_hand_over_survives_a_second_cancel():
    app = QueueTasks("cancel2-split", broker_url="memory://cancel2-split")
    state = app.backend.state
    broker, store = MemoryBroker(state), SlowStore(state)
    (task,) = app.add_tasks([("job", (1,))])

    async def scenario():
        transport = Transport(broker, store)
        return await _twice_cancelled_then_fetched(transport, lambda: asyncio.sleep(0.3))

    result = asyncio.run(scenario())
    assert [d.uuid for d in result.deliveries] == [str(task.uuid)]
