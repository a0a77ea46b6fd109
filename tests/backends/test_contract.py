"""The backend contract (src/qtasks/backends/base.py), held against every backend.

Each test drives a backend the way the worker does, through its transport, and reads back what
a producer would see: records, stats, dead letters.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time

import pytest

from qtasks.backends.base import Outcome
from qtasks.backends.transport import Transport
from qtasks.core.codec import dumps


def outcome(delivery, status="success", result=None, **fields):
    return Outcome(delivery=delivery, uuid=delivery.uuid, status=status, task_name="job",
                   priority=delivery.priority,
                   returning_json=dumps(result) if result is not None else None, **fields)


def test_lower_priority_number_first_and_fifo_within_one(contract):
    tasks = [contract.new("job", i, priority=p) for i, p in enumerate([2, 0, 1, 0, 2, 1, 0])]
    contract.enqueue(*tasks)
    got = contract.fetch(limit=3) + contract.fetch(limit=10)
    order = {t.uuid: i for i, t in enumerate(tasks)}
    assert [(d.priority, order[d.uuid]) for d in got] == \
        [(0, 1), (0, 3), (0, 6), (1, 2), (1, 5), (2, 0), (2, 4)]


def test_bulk_enqueue_queues_every_task_with_its_record(contract):
    tasks = [contract.new("job", i) for i in range(250)]
    contract.enqueue(*tasks)
    stats = contract.app.stats()
    assert (stats.queued, stats.running, stats.records) == (250, 0, 250)
    assert contract.client.get(tasks[17].uuid)["status"] == "new"
    assert len(contract.fetch(limit=1000)) == 250


def test_a_delayed_task_is_not_handed_out_before_its_time(contract):
    eta = time.time() + 0.6
    contract.enqueue(contract.new("job", eta=eta))
    assert contract.fetch() == []
    assert contract.app.stats().delayed == 1
    got = contract.fetch(block=5.0)  # a blocking fetch wakes up when the task becomes due
    assert len(got) == 1
    # Measured against the task's own due time, not the test's: a slow machine may spend
    # most of the delay before the blocking fetch even starts.
    assert time.time() >= eta - 0.05


def test_named_queues_are_kept_apart(contract):
    contract.enqueue(contract.new("job", 1, queue="emails"), contract.new("job", 2))
    assert [d.queue for d in contract.fetch(queues=("emails",))] == ["emails"]
    assert [d.queue for d in contract.fetch(queues=("default", "emails"))] == ["default"]
    assert contract.app.stats().by_queue == {}


def test_an_expired_lease_hands_the_task_to_another_worker(contract):
    contract.enqueue(contract.new())
    first = contract.fetch("a", lease=0.3)
    assert len(first) == 1 and contract.fetch("b") == []
    time.sleep(0.4)
    second = contract.fetch("b")
    assert [d.uuid for d in second] == [first[0].uuid]
    assert second[0].token != first[0].token
    lost = contract.run(contract.transport.heartbeat(_info("a"), first, 30.0))
    assert lost == first  # the first worker learns that it no longer holds it


def test_an_expired_lease_is_not_started_or_extended_even_if_unclaimed(contract):
    # Nobody took the task yet, but its lease ran out: starting it now could race a claim in
    # the same round trip, and both workers would run it. It is refused, and handed out again.
    (task,) = contract.enqueue(contract.new())
    (held,) = contract.fetch("a", lease=0.2)
    time.sleep(0.3)
    assert contract.exchange("a", limit=0, started=[held]).refused == [held]
    assert contract.run(contract.transport.heartbeat(_info("a"), [held], 30.0)) == [held]
    (again,) = contract.fetch("b", start=1)
    assert (again.uuid, again.deliveries, again.started) == (task.uuid, 0, True)
    assert contract.client.get(task.uuid)["status"] == "process"


def test_a_stale_and_a_current_delivery_of_one_message_start_as_their_tokens_say(contract):
    # The same worker re-claimed a message whose earlier lease ran out: starting both in one
    # batch starts only the delivery whose token is current, so the task runs once.
    contract.enqueue(contract.new())
    (stale,) = contract.fetch("a", lease=0.2)
    time.sleep(0.3)
    (current,) = contract.fetch("a")
    assert current.token != stale.token
    result = contract.exchange("a", limit=0, started=[stale, current])
    assert result.refused == [stale]
    assert (stale.started, current.started) == (False, True)
    assert contract.run(contract.transport.heartbeat(_info("a"), [stale, current], 30.0)) == [stale]


def test_an_extended_lease_keeps_the_task(contract):
    contract.enqueue(contract.new())
    held = contract.fetch("a", lease=0.5)
    for _ in range(3):
        time.sleep(0.3)
        assert contract.run(contract.transport.heartbeat(_info("a"), held, 0.5)) == []
    assert contract.fetch("b") == []
    assert contract.app.stats().running == 1


def test_a_finish_from_a_lost_lease_is_rejected_and_the_holder_wins(contract):
    (task,) = contract.enqueue(contract.new())
    old = contract.fetch("a", lease=0.2, start=1)
    time.sleep(0.3)
    new = contract.fetch("b", start=1)
    assert new[0].deliveries == 1 and not new[0].started  # a redelivery: the worker starts it
    assert contract.exchange("b", limit=0, started=new).refused == []
    late = contract.exchange("a", limit=0, finished=[outcome(old[0], result="from a")])
    assert [o.uuid for o in late.rejected] == [task.uuid]
    assert contract.client.get(task.uuid)["status"] == "process"
    done = contract.exchange("b", limit=0, finished=[outcome(new[0], result="from b")])
    assert done.rejected == []
    record = contract.client.get(task.uuid)
    assert (record["status"], record["returning"]) == ("success", '"from b"')
    assert contract.app.stats().queued + contract.app.stats().running == 0


def test_only_started_deliveries_are_counted(contract):
    contract.enqueue(contract.new())
    prefetched = contract.fetch(lease=0.2)  # taken, never started
    assert (prefetched[0].deliveries, prefetched[0].started) == (0, False)
    time.sleep(0.3)
    started = contract.fetch(lease=0.2, start=1)
    assert (started[0].deliveries, started[0].started) == (0, True)
    time.sleep(0.3)
    again = contract.fetch(lease=0.2)
    assert again[0].deliveries == 1
    result = contract.exchange(limit=0, started=again)  # starting it later counts too
    assert result.refused == []
    time.sleep(0.3)
    assert contract.fetch()[0].deliveries == 2


def test_a_final_record_is_written_once(contract):
    (task,) = contract.enqueue(contract.new())
    (delivery,) = contract.fetch(start=1)
    contract.exchange(limit=0, finished=[outcome(delivery, result=1)])
    second = contract.exchange(limit=0, finished=[outcome(delivery, "error", traceback="x")])
    assert len(second.rejected) == 1
    record = contract.client.get(task.uuid)
    assert (record["status"], record["returning"], record["traceback"]) == ("success", "1", None)


def test_cancel_before_start_and_not_after(contract):
    queued, prefetched, running = contract.enqueue(*(contract.new("job", i) for i in range(3)))
    taken = {d.uuid: d for d in contract.fetch(limit=2, start=0)}
    assert set(taken) == {queued.uuid, prefetched.uuid}
    contract.exchange(limit=0, started=[taken[queued.uuid]])
    assert contract.client.cancel(running.uuid, "not needed")  # never fetched
    assert contract.client.cancel(prefetched.uuid, "not needed")  # fetched, not started
    assert not contract.client.cancel(queued.uuid, "too late")  # started
    refused = contract.exchange(limit=10, started=[taken[prefetched.uuid]])
    assert [d.uuid for d in refused.refused] == [prefetched.uuid]
    assert refused.deliveries == []
    for uuid in (prefetched.uuid, running.uuid):
        record = contract.client.get(uuid)
        assert record["status"] == "cancel"
        assert "not needed" in record["extra"]
    assert contract.client.get(queued.uuid)["status"] == "process"


def test_release_hands_back_to_the_same_queue_after_the_delay(contract):
    (task,) = contract.enqueue(contract.new(queue="emails"))
    (delivery,) = contract.fetch(queues=("emails",), start=1)
    contract.run(contract.transport.release([delivery], delay=0.4))
    assert contract.fetch(queues=("emails",)) == []
    assert contract.client.get(task.uuid)["status"] == "new"
    again = contract.fetch(queues=("emails",), block=3.0)
    assert [(d.uuid, d.queue, d.deliveries) for d in again] == [(task.uuid, "emails", 1)]
    assert contract.exchange(queues=("emails",), limit=0, finished=[outcome(delivery)]).rejected


def test_a_record_keeps_the_worker_that_ran_it_and_the_number_of_that_start(contract):
    plain, failing, other = contract.enqueue(contract.new(), contract.new(), contract.new())
    first = contract.fetch(limit=3, start=3)
    by_uuid = {d.uuid: d for d in first}
    contract.exchange(limit=0, finished=[
        outcome(by_uuid[plain.uuid], "success", 7, worker="host:1:aa", started_at=1.5e9),
        outcome(by_uuid[failing.uuid], "error", traceback="Boom", worker="host:1:aa",
                started_at=1.5e9,
                extra_json=dumps({"exception": "builtins.ValueError", "worker": "mine"})),
        outcome(by_uuid[other.uuid], "success", 8)])  # run inline: no worker
    done = contract.app.get(plain.uuid)
    assert (done.returning, done.extra) == \
        (7, {"worker": "host:1:aa", "deliveries": 1, "started_at": 1.5e9})
    assert contract.app.get(failing.uuid).extra == {"worker": "mine", "deliveries": 1,
                                                    "started_at": 1.5e9,
                                                    "exception": "builtins.ValueError"}
    assert contract.app.get(other.uuid).extra == {}


def test_a_final_record_is_stamped_with_the_time_it_was_written(contract):
    # Written early in a second as well as late: a clock kept as text (Redis' TIME) must keep
    # the microseconds' leading zeros.
    for fraction in (0.002, 0.05, 0.5):
        (task,) = contract.enqueue(contract.new())
        (delivery,) = contract.fetch(limit=1, start=1)
        while not fraction <= time.time() % 1 < fraction + 0.02:
            time.sleep(0.001)
        before = time.time()
        contract.exchange(limit=0, finished=[outcome(delivery, "success", 1)])
        after = time.time()
        stamped = contract.app.get(task.uuid).updated_at.timestamp()
        assert before - 0.05 <= stamped <= after + 0.05, (fraction, before, stamped, after)


def test_dead_letters_are_kept_with_their_reason(contract):
    (task,) = contract.enqueue(contract.new())
    (delivery,) = contract.fetch(start=1)
    contract.exchange(limit=0, finished=[outcome(delivery, "error", traceback="Boom: no",
                                                 dead_letter="Boom: no")])
    letters = contract.app.dead_letters()
    assert [(d.uuid, d.task_name, d.reason) for d in letters] == [(task.uuid, "job", "Boom: no")]
    assert contract.run(contract.transport.dead_letters()) == letters
    assert contract.app.stats().dead_letters == 1


def test_dead_letters_are_deleted_by_id(contract):
    tasks = contract.enqueue(contract.new(), contract.new())
    deliveries = contract.fetch(start=2)
    contract.exchange(limit=0, finished=[
        outcome(d, "error", traceback="Boom", dead_letter=f"Boom {d.uuid}") for d in deliveries])
    letters = contract.client.dead_letters()
    assert sorted(d.uuid for d in letters) == sorted(t.uuid for t in tasks)
    assert contract.client.delete_dead_letters([letters[0].id]) == 1
    assert [d.uuid for d in contract.client.dead_letters()] == [letters[1].uuid]
    assert contract.client.delete_dead_letters([letters[0].id]) == 0  # gone already
    assert contract.client.delete_dead_letters([]) == 0
    assert contract.app.stats().dead_letters == 1 == contract.client.dead_letter_count()


def test_purge_drops_the_waiting_messages_of_one_queue(contract):
    held, waiting = contract.enqueue(contract.new(queue="emails"), contract.new(queue="emails"))
    later = contract.new(queue="emails", eta=time.time() + 3600)
    other = contract.new(queue="reports")
    contract.enqueue(later, other)
    (delivery,) = contract.fetch(queues=("emails",), limit=1, start=1)
    assert delivery.uuid == held.uuid
    gone = contract.client.purge("emails", 10, "purged by a test")
    assert sorted(gone) == sorted([waiting.uuid, later.uuid])  # ready and delayed, not leased
    for uuid in gone:
        record = contract.client.get(uuid)
        assert record["status"] == "cancel"
        assert "purged by a test" in record["extra"]
    assert contract.client.get(held.uuid)["status"] == "process"
    assert contract.client.purge("emails", 10, "again") == []
    stats = contract.app.stats()
    assert (stats.queued, stats.running, stats.by_queue) == (1, 1, {"reports": 1})
    result = contract.exchange(queues=("emails",), limit=0, finished=[outcome(delivery)])
    assert not result.rejected  # the held one finishes as usual
    assert contract.client.get(held.uuid)["status"] == "success"


def test_purge_takes_at_most_its_limit(contract):
    contract.enqueue(*(contract.new(queue="bulk") for _ in range(1200)))
    batches = [contract.client.purge("bulk", 500, "purged") for _ in range(4)]
    assert [len(b) for b in batches] == [500, 500, 200, 0]
    assert len({u for b in batches for u in b}) == 1200
    assert contract.app.stats().queued == 0


def test_a_follow_up_is_queued_with_the_outcome(contract):
    contract.enqueue(contract.new(queue="emails"))
    (delivery,) = contract.fetch(queues=("emails",), start=1)
    follow = contract.new("job", 2, queue="emails")
    contract.exchange(queues=("emails",), limit=0,
                      finished=[outcome(delivery, "retry", follow_up=follow)])
    assert [d.uuid for d in contract.fetch(queues=("emails",))] == [follow.uuid]


def test_a_waiting_producer_is_woken_by_the_final_record(contract):
    (task,) = contract.enqueue(contract.new())
    (delivery,) = contract.fetch(start=1)
    got = {}
    waiter = threading.Thread(target=lambda: got.update(row=contract.client.wait(task.uuid, 10)))
    waiter.start()
    time.sleep(0.1)
    contract.exchange(limit=0, finished=[outcome(delivery, result=7)])
    waiter.join(10)
    assert got["row"]["returning"] == "7"


def test_a_cancelled_blocking_fetch_strands_nothing(contract):
    async def scenario():
        transport = contract.transport
        pending = asyncio.ensure_future(
            transport.exchange("w", ("default",), limit=5, lease=30.0, block=5.0))
        await asyncio.sleep(0.05)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        await transport.enqueue([contract.new()])
        return await transport.exchange("w", ("default",), limit=5, lease=30.0, block=2.0)

    assert len(contract.run(scenario()).deliveries) == 1


def test_a_message_kept_from_a_cancelled_fetch_is_not_overtaken(contract):
    # A blocking fetch takes the first message, and its caller gives up before the answer
    # arrives (a worker woken by a finished task does). That answer comes with the next round
    # trip (one that writes an outcome), beside messages claimed then: those count against its
    # limit, and none of them may be started while the kept one is not (the worker would run
    # it first).
    contract.enqueue(contract.new("job", 0))
    [running] = contract.fetch(start=1)

    async def scenario():
        transport = contract.transport
        pending = asyncio.ensure_future(
            transport.exchange("w", ("default",), limit=1, lease=30.0, block=5.0))
        await asyncio.sleep(0.1)  # blocked in the backend
        first = contract.new("job", 1, priority=1)
        contract.client.enqueue([first])  # blocking: the fetch takes it meanwhile
        time.sleep(0.3)
        pending.cancel()  # before this loop reads its answer
        with pytest.raises(asyncio.CancelledError):
            await pending
        later = [contract.new("job", 2, priority=3), contract.new("job", 3, priority=5)]
        await transport.enqueue(later)
        got = await transport.exchange("w", ("default",), limit=2, lease=30.0, start=2,
                                       finished=[outcome(running, result=0)])
        return first, later, got.deliveries

    first, later, got = contract.run(scenario())
    assert [d.uuid for d in got] == [first.uuid, later[0].uuid]
    started = [d.started for d in sorted(got, key=lambda d: d.priority)]
    assert started == sorted(started, reverse=True)  # no unstarted one before a started one


def test_search_lists_records_newest_first(contract):
    tasks = contract.enqueue(*(contract.new("job", i) for i in range(5)))
    contract.enqueue(contract.new("other"))
    rows = contract.client.search(task_name="job", limit=3)
    assert [r["uuid"] for r in rows] == [t.uuid for t in tasks[::-1][:3]]
    assert [r["uuid"] for r in contract.client.search(status="new", before=tasks[2].created_at)] \
        == [tasks[1].uuid, tasks[0].uuid]


def _pages(contract, limit, **filters):
    """Every page of a search, following the cursor to the end."""
    pages, cursor = [], None
    while page := contract.client.search(limit=limit, cursor=cursor, **filters):
        assert len(page) <= limit
        pages.append([r["uuid"] for r in page])
        cursor = (page[-1]["created_at"], page[-1]["uuid"])
    return pages


def _flat(pages):
    return [uuid for page in pages for uuid in page]


def test_search_pages_through_every_record_once_when_creation_times_tie(contract):
    base = time.time() - 1
    # groups of four tasks share a creation time, as a bulk enqueue's tasks may
    tasks = [dataclasses.replace(contract.new("job", i), created_at=base + (i // 4) / 1000)
             for i in range(30)]
    contract.enqueue(*tasks)
    (other,) = contract.enqueue(contract.new("other"))
    newest_first = [t.uuid for t in sorted(tasks, key=lambda t: (t.created_at, t.uuid),
                                           reverse=True)]
    pages = _pages(contract, 7, task_name="job")
    assert [len(p) for p in pages] == [7, 7, 7, 7, 2]
    assert _flat(pages) == newest_first
    assert _flat(_pages(contract, 4, status="new")) == [other.uuid, *newest_first]
    assert _flat(_pages(contract, 9, status="new", task_name="job")) == newest_first
    assert _flat(_pages(contract, 11)) == [other.uuid, *newest_first]


def test_records_keep_their_queue_and_search_filters_on_it(contract):
    base = time.time() - 1
    mails = [dataclasses.replace(contract.new("job", i, queue="emails"), created_at=base + i / 1000)
             for i in range(5)]
    plain = contract.enqueue(contract.new("job", 9))
    contract.enqueue(*mails)
    assert contract.client.get(mails[0].uuid)["queue"] == "emails"
    assert contract.app.get(plain[0].uuid).queue == "default"
    newest_first = [t.uuid for t in mails[::-1]]
    assert _flat(_pages(contract, 2, queue="emails")) == newest_first
    assert _flat(_pages(contract, 2, queue="emails", task_name="job")) == newest_first
    assert _flat(_pages(contract, 2, queue="emails", status="new")) == newest_first
    assert [r["uuid"] for r in contract.client.search(queue="default")] == [plain[0].uuid]
    assert contract.client.search(queue="nowhere") == []


def test_search_goes_on_from_a_cursor_whose_record_has_changed_status(contract):
    base = time.time()
    tasks = [dataclasses.replace(contract.new("job", i), created_at=base + i / 1000)
             for i in range(6)]
    contract.enqueue(*tasks)
    newest_first = [t.uuid for t in tasks[::-1]]
    first = contract.client.search(status="new", limit=2)
    assert [r["uuid"] for r in first] == newest_first[:2]
    # the page's last task starts: it leaves the "new" rows, and the next page still follows it
    started = [d.uuid for d in contract.fetch(limit=10, start=10)]
    assert set(started) == set(newest_first)
    later = contract.enqueue(*(dataclasses.replace(contract.new("job", i),
                                                   created_at=base + i / 1000) for i in range(3)))
    cursor = (first[-1]["created_at"], first[-1]["uuid"])
    rest = contract.client.search(status="new", limit=10, cursor=cursor)
    assert {r["uuid"] for r in rest} == {t.uuid for t in later}
    assert len(rest) == 3
    below = contract.client.search(limit=10, cursor=cursor)
    assert {r["uuid"] for r in below} == {*newest_first[2:], *(t.uuid for t in later)}
    assert len(below) == 7


def test_the_overview_counts_match_the_full_stats(contract):
    from qtasks import operator

    contract.enqueue(contract.new("job", 1), contract.new("job", 2, queue="emails"),
                     contract.new("job", 3, eta=time.time() + 60))
    contract.fetch(limit=1, start=1)
    rows, totals, workers = operator.overview(contract.app)
    stats = contract.app.stats()
    assert totals == {"queued": stats.queued, "running": stats.running,
                      "delayed": stats.delayed, "dead_letters": stats.dead_letters,
                      "workers": stats.workers}
    assert (totals["queued"], totals["running"], totals["delayed"]) == (2, 1, 1)
    assert contract.client.dead_letter_count() == stats.dead_letters == 0
    assert workers == []
    assert {"queue": "emails", "waiting": 1} in rows


def test_workers_are_listed_as_they_last_reported(contract):
    from qtasks.backends.transport import worker_info

    assert contract.client.workers() == []
    started = time.time() - 5
    contract.run(contract.transport.heartbeat(
        worker_info("w7", started, 8, ("default", "emails"), running=3, totals=(41, 2, 7.25)),
        [], 30.0))
    (row,) = contract.client.workers()
    assert (row.id, row.pid, row.concurrency, row.queues, row.running) == \
        ("w7", os.getpid(), 8, ("default", "emails"), 3)
    assert (row.finished, row.failed, row.busy_seconds) == (41, 2, 7.25)
    assert row.started_at == pytest.approx(started, abs=0.01)
    assert time.time() - 5 < row.heartbeat_at <= time.time() + 1
    contract.run(contract.transport.heartbeat(
        worker_info("w7", started, 8, ("default", "emails"), running=0), [], 30.0))
    assert contract.client.workers()[0].running == 0
    contract.run(contract.transport.unregister("w7"))
    assert contract.client.workers() == []


def test_live_workers_are_counted(contract):
    assert not contract.client.ping()
    contract.run(contract.transport.heartbeat(_info("w9"), [], 30.0))
    assert contract.client.ping() and contract.app.stats().workers == 1
    contract.run(contract.transport.unregister("w9"))
    assert not contract.client.ping()


def _info(worker):
    from qtasks.backends.transport import worker_info

    return worker_info(worker, time.time(), 1)


def test_a_task_set_aside_without_running_again_is_recorded(contract):
    (task,) = contract.enqueue(contract.new())
    contract.fetch("dead", lease=0.2, start=1)  # started; its worker then dies
    time.sleep(0.3)
    (again,) = contract.fetch("next")
    assert (again.deliveries, again.started) == (1, False)
    reason = "WorkerLostError: gone"
    result = contract.exchange("next", limit=0, finished=[
        outcome(again, "error", traceback=reason, dead_letter=reason)])
    assert result.rejected == []
    assert contract.client.get(task.uuid)["status"] == "error"
    assert [d.reason for d in contract.app.dead_letters()] == [reason]
    assert contract.app.stats().queued + contract.app.stats().running == 0


def test_a_rejected_outcome_queues_no_follow_up(contract):
    contract.enqueue(contract.new())
    (old,) = contract.fetch("a", lease=0.2, start=1)
    time.sleep(0.3)
    new = contract.fetch("b")
    contract.exchange("b", limit=0, started=new)
    follow = contract.new("job", 2)
    late = contract.exchange("a", limit=0, finished=[outcome(old, "retry", follow_up=follow)])
    assert len(late.rejected) == 1
    if type(contract.transport) is not Transport:  # one transaction: nothing of it stays
        assert contract.client.get(follow.uuid) is None
    else:  # two services: queued before the outcome was written, then cancelled at once
        assert contract.client.get(follow.uuid)["status"] == "cancel"
    assert contract.fetch("c") == []  # either way, no retry of the lost attempt runs


def test_an_outcome_the_store_cannot_hold_is_reported_not_written(contract):
    bad, good = contract.enqueue(contract.new(), contract.new())
    deliveries = {d.uuid: d for d in contract.fetch(start=2)}
    result = contract.exchange(limit=0, finished=[
        outcome(deliveries[bad.uuid], result="lone \ud800 surrogate"),
        outcome(deliveries[good.uuid], result="fine")])
    assert [o.uuid for o, _ in result.unstorable] == [bad.uuid]
    assert "surrogate" in result.unstorable[0][1]
    assert result.rejected == []
    assert contract.client.get(bad.uuid)["status"] == "process"  # not written ...
    assert contract.client.get(good.uuid)["returning"] == '"fine"'  # ... and not in the way
    stats = contract.app.stats()
    assert (stats.queued, stats.running) == (0, 1)  # its message stays: core stores an error
