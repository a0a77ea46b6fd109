"""A producer that waits for a task is told of its final record on a channel of its own (one
per thread of a sync app, one per event loop of an async app): it never hears of the records
other producers wait for, so that with many producers waiting at once each receives only its
own notices. A record waited for by several producers tells each of them."""

from __future__ import annotations

import threading
import time

from qtasks import QueueTasks


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
