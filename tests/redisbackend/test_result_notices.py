"""A producer that waits for a task is told of its final record on a channel of its own (one
per thread of a sync app, one per event loop of an async app): it never hears of the records
other producers wait for, so that with many producers waiting at once each receives only its
own notices. A record waited for by several producers tells each of them."""

from __future__ import annotations

import asyncio
import threading
import time

from qtasks import QueueTasks
from qtasks.asyncio import QueueTasks as AsyncQueueTasks


def _notices(spy) -> list[str]:
    """The uuids of the notices the spy has received, until none comes for half a second (a
    read may return ``None`` for a subscription's confirmation, which is skipped)."""
    uuids, quiet = [], time.monotonic() + 0.5
    while time.monotonic() < quiet:
        message = spy.get_sharded_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            uuids.append(message["data"].split("\n", 1)[0])  # the client decodes
            quiet = time.monotonic() + 0.5
    return uuids


def test_each_waiting_producer_hears_only_of_what_it_waits_for(redis_server, apps):
    spec, app = apps.app(redis_server.url, name="notices")
    other = QueueTasks(name="notices", broker_url=redis_server.url)  # a second producer
    apps.apps.append(other)
    apps.worker(spec)
    backend = app.backend
    spy = redis_server.client().pubsub()
    spy.ssubscribe(backend.keys.final_channel(backend.sync.listener))  # the first one's channel
    mine = app.add_task("mark", 1, timeout=10)
    assert mine.status == "success"
    theirs = [other.add_task("mark", i, timeout=10) for i in range(2, 12)]
    assert [t.status for t in theirs] == ["success"] * 10
    # both wait for one task, the second from a thread of its own (its own listener): each
    # is told on its own channel
    shared = other.add_task("mark", 100, sleep=0.5)
    spies, ready, seen = [spy], threading.Event(), []

    def wait_in_a_thread() -> None:
        second = redis_server.client().pubsub()
        second.ssubscribe(other.backend.keys.final_channel(other.backend.sync.listener))
        spies.append(second)
        ready.set()
        seen.append(other.wait_sync(shared.uuid, 10))

    thread = threading.Thread(target=wait_in_a_thread)
    thread.start()
    assert ready.wait(10)
    first = app.wait_sync(shared.uuid, 10)
    thread.join(15)
    assert (first.status, [t.status for t in seen]) == ("success", ["success"])
    # on the first producer's channel: its own two, none of the other's ten
    assert _notices(spy) == [str(mine.uuid), str(shared.uuid)]
    assert _notices(spies[1]) == [str(shared.uuid)]
    for each in spies:
        each.close()


def test_an_async_waiter_outlives_its_subscription_and_the_next_wait_resubscribes(
        redis_server, apps):
    spec, _ = apps.app(redis_server.url, name="resubscribe")
    apps.worker(spec)
    async_app = AsyncQueueTasks(name="resubscribe", broker_url=redis_server.url)
    admin = redis_server.client()

    async def scenario() -> tuple[list[str], int, list[str]]:
        first = await async_app.add_task("mark", 1, timeout=10)  # the loop has subscribed
        waiting = asyncio.ensure_future(async_app.add_task("mark", 2, sleep=1.0, timeout=15))
        await asyncio.sleep(0.3)
        killed = admin.client_kill_filter(_type="pubsub")  # its notice connection goes
        second = await waiting  # told nothing: its pause ends, and it reads the record
        third = await async_app.add_task("mark", 3, timeout=10)  # on a new subscription
        subscribers = admin.execute_command("PUBSUB", "SHARDNUMSUB",
                                            async_app.backend.keys.final_channel(
                                                async_app.backend.conns.get().listener))
        return [r.status for r in (first, second, third)], killed, subscribers

    statuses, killed, subscribers = asyncio.run(scenario())
    assert killed == 1
    assert statuses == ["success"] * 3
    assert subscribers[1] == 1  # the third wait subscribed again


def test_a_sync_waiter_outlives_its_subscription_and_the_next_wait_resubscribes(
        redis_server, apps):
    spec, app = apps.app(redis_server.url, name="resubscribe_sync")
    apps.worker(spec)
    admin = redis_server.client()
    first = app.add_task("mark", 1, timeout=10)  # this thread has subscribed
    # read by qtasks itself (the direct path), not by redis-py's PubSub
    assert type(app.backend.sync.subscribed()).__name__ == "BlockingWire"
    killed: list[int] = []
    killer = threading.Timer(0.3, lambda: killed.append(admin.client_kill_filter(_type="pubsub")))
    killer.start()
    began = time.monotonic()
    second = app.add_task("mark", 2, sleep=1.0, timeout=15)  # its notice connection goes
    waited = time.monotonic() - began
    killer.join()
    third = app.add_task("mark", 3, timeout=10)
    subscribers = admin.execute_command("PUBSUB", "SHARDNUMSUB", app.backend.keys.final_channel(
        app.backend.sync.listener))
    assert killed == [1]
    assert [r.status for r in (first, second, third)] == ["success"] * 3
    assert second.returning == 2 and third.returning == 3
    assert waited < 5  # told on the new subscription, or read after a pause: not the timeout
    assert subscribers[1] == 1  # subscribed again, once


def test_an_async_waiter_is_told_even_when_the_notice_comes_before_the_enqueue_reply(
        redis_server, apps):
    # A task that finishes before its producer has read the reply to its enqueue: both sit in
    # the producer's sockets, and its loop may read the notice first. The wait must still be
    # told (a wait told nothing reads the record after its one-second pause). A coroutine
    # no-op on an asyncio worker finishes that fast.
    (apps.folder / "early_app.py").write_text(
        "from qtasks.asyncio import QueueTasks\n"
        f"app = QueueTasks(name='early', broker_url={redis_server.url!r})\n"
        "@app.task(name='noop')\n"
        "async def noop(i):\n"
        "    return i\n")
    apps.worker("early_app:app", "--loop", "asyncio")
    async_app = AsyncQueueTasks(name="early", broker_url=redis_server.url)

    async def trips() -> list[float]:
        await async_app.add_task("noop", 0, timeout=10)
        took = []
        for i in range(200):
            await asyncio.sleep(0.002)  # the worker is waiting in Redis when the task comes
            began = time.monotonic()
            record = await async_app.add_task("noop", i, timeout=10)
            took.append(time.monotonic() - began)
            assert (record.status, record.returning) == ("success", i)
        return took

    took = asyncio.run(trips())
    late = [t for t in took if t >= 0.9]
    assert len(late) <= 2, f"{len(late)} of 200 waits heard nothing: {sorted(took)[-5:]}"


def test_a_waiting_producer_reads_nothing_while_the_task_runs(redis_server, apps):
    # Told of the final record by its notice, a producer does not read the record while it
    # waits: not even once a second (as QTasks' result_time_interval did).
    spec, app = apps.app(redis_server.url, name="quiet")
    apps.worker(spec)
    assert app.add_task("mark", 0, timeout=10).returning == 0  # warmed up
    async_app = AsyncQueueTasks(name="quiet", broker_url=redis_server.url)
    apps.apps.append(async_app)
    with redis_server.monitored() as seen:
        assert app.add_task("mark", 1, sleep=2.5, timeout=10).returning == 1
        assert asyncio.run(async_app.add_task("mark", 2, sleep=2.5, timeout=10)).returning == 2
    assert any("enqueue" in c.split() for c in seen), seen[:5]  # MONITOR saw the calls
    reads = [c for c in seen if "watch" in c.split() or "get" in c.split()]
    assert reads == []


def test_a_wait_whose_subscription_is_cut_still_hears_of_the_end(redis_server, apps):
    # The connection that hears of final records is killed while the task runs: the wait
    # subscribes again, reads the record, and is told of the end as before (not after its
    # backstop of 30 s, nor never).
    spec, app = apps.app(redis_server.url, name="cut")
    apps.worker(spec)
    async_app = AsyncQueueTasks(name="cut", broker_url=redis_server.url)
    apps.apps.append(async_app)

    def cut_soon() -> threading.Thread:
        def cut() -> None:
            time.sleep(0.7)
            with redis_server.client() as client:
                assert client.client_kill_filter(_type="pubsub") >= 1

        thread = threading.Thread(target=cut)
        thread.start()
        return thread

    # Not told, a wait would find the record only in its last read, at its timeout (20 s):
    # told, it returns once the 2 s task ends. 15 s leaves a loaded machine a wide margin.
    began = time.monotonic()
    cutter = cut_soon()
    assert app.add_task("mark", 1, sleep=2.0, timeout=20).returning == 1
    cutter.join(10)
    assert time.monotonic() - began < 15

    async def wait_async() -> int:
        cutter = cut_soon()
        task = await async_app.add_task("mark", 2, sleep=2.0, timeout=20)
        cutter.join(10)
        return task.returning

    began = time.monotonic()
    assert asyncio.run(wait_async()) == 2
    assert time.monotonic() - began < 15


def test_notices_that_come_before_their_waits_are_never_lost():
    # A notice read before its wait began (its task ended before the producer read the reply
    # to the enqueue) is kept for that wait: with its record while there are few, and past
    # that only as "told", so that the wait reads the record at once instead of pausing.
    # Driven directly: which notice comes first is up to the sockets.
    from qtasks.backends.redis import connection
    from qtasks.backends.redis.protocol import Keys

    async def scenario():
        conn = connection.AsyncConn(connection.parse_url("redis://127.0.0.1:1/0"), Keys("x"))
        count = connection._EARLY_KEPT + 50
        for i in range(count):
            conn._deliver(f"u{i}", {"uuid": f"u{i}", "status": "success"})
        told = [conn.expect(f"u{i}") for i in range(count)]
        later = conn.expect("never-told")
        await conn.redis.aclose()
        return count, told, later

    count, told, later = asyncio.run(scenario())
    assert all(f.done() for f in told)  # no wait pauses for a notice that came
    # the newest keep their record; the oldest say only "read it" (None)
    assert [f.result() is None for f in told] == [True] * 50 + [False] * (count - 50)
    assert not later.done()
