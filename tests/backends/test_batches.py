"""Round trips that carry several deliveries at once, some of which must be turned down.

A backend may write a whole batch in a few statements; these tests check that one stale,
cancelled or repeated member of a batch is reported on its own and does not change what
happens to the others.
"""

from __future__ import annotations

import time

from tests.backends.test_contract import outcome


def _records(contract, tasks):
    return [contract.client.get(t.uuid) for t in tasks]


def test_one_stale_finish_in_a_batch_is_rejected_alone(contract):
    tasks = contract.enqueue(*(contract.new("job", i) for i in range(4)))
    mine = contract.fetch("a", lease=30.0, limit=3, start=3)
    old = contract.fetch("a", lease=0.2, limit=1, start=1)
    time.sleep(0.3)
    (new,) = contract.fetch("b", start=0)
    assert new.uuid == old[0].uuid
    assert contract.exchange("b", limit=0, started=[new]).refused == []
    batch = [outcome(mine[0], result=0), outcome(old[0], result="late"),
             outcome(mine[1], result=1), outcome(mine[2], "error", traceback="boom")]
    result = contract.exchange("a", limit=0, finished=batch)
    assert [o.uuid for o in result.rejected] == [old[0].uuid]
    by_uuid = {r["uuid"]: r for r in _records(contract, tasks)}
    assert [(by_uuid[d.uuid]["status"], by_uuid[d.uuid]["returning"]) for d in mine] == \
        [("success", "0"), ("success", "1"), ("error", None)]
    assert by_uuid[old[0].uuid]["status"] == "process"  # still held by b
    done = contract.exchange("b", limit=0, finished=[outcome(new, result="b")])
    assert done.rejected == []
    assert contract.client.get(new.uuid)["returning"] == '"b"'
    stats = contract.app.stats()
    assert stats.queued + stats.running == 0


def test_one_lost_start_in_a_batch_is_refused_alone(contract):
    contract.enqueue(*(contract.new("job", i) for i in range(3)))
    held = contract.fetch("a", lease=30.0, limit=2)
    (lost,) = contract.fetch("a", lease=0.2, limit=1)
    time.sleep(0.3)
    (taken,) = contract.fetch("b", lease=0.2)
    assert taken.uuid == lost.uuid
    result = contract.exchange("a", limit=0, started=[held[0], lost, held[1]])
    assert result.refused == [lost]
    assert held[0].started and held[1].started and not lost.started
    for d in held:
        assert contract.client.get(d.uuid)["status"] == "process"
    assert contract.exchange("b", limit=0, started=[taken]).refused == []
    time.sleep(0.3)
    (again,) = contract.fetch("c")
    assert again.uuid == lost.uuid
    assert again.deliveries == 1  # b's start counted, a's refused one not


def test_a_task_cancelled_in_a_batch_of_starts_is_refused_alone(contract):
    tasks = contract.enqueue(*(contract.new("job", i) for i in range(3)))
    got = {d.uuid: d for d in contract.fetch(limit=3)}
    assert contract.client.cancel(tasks[1].uuid, "not needed")
    started = [got[t.uuid] for t in tasks]
    result = contract.exchange(limit=10, started=started)
    assert [d.uuid for d in result.refused] == [tasks[1].uuid]
    records = _records(contract, tasks)
    assert [r["status"] for r in records] == ["process", "cancel", "process"]
    assert contract.exchange(limit=0, finished=[outcome(got[tasks[0].uuid]),
                                                outcome(got[tasks[2].uuid])]).rejected == []
    stats = contract.app.stats()
    assert stats.queued + stats.running == 0


def test_a_task_finished_twice_in_one_batch_is_written_once(contract):
    (task,) = contract.enqueue(contract.new())
    (delivery,) = contract.fetch(start=1)
    result = contract.exchange(limit=0, finished=[outcome(delivery, result=1),
                                                  outcome(delivery, "error", traceback="x")])
    assert "error" in [o.status for o in result.rejected]
    if contract.app.backend.describe().startswith("sqlite"):
        assert [o.status for o in result.rejected] == ["error"]
    record = contract.client.get(task.uuid)
    assert (record["status"], record["returning"]) == ("success", "1")


def test_a_batch_of_starts_counts_each_start_once(contract):
    contract.enqueue(*(contract.new("job", i) for i in range(5)))
    got = contract.fetch(limit=5, lease=0.3)
    assert contract.exchange(limit=0, started=got).refused == []
    time.sleep(0.4)
    again = contract.fetch(limit=5)
    assert sorted(d.deliveries for d in again) == [1] * 5


def test_a_large_batch_goes_through_in_one_round_trip(contract):
    tasks = contract.enqueue(*(contract.new("job", i) for i in range(150)))
    got = contract.fetch(limit=150)
    assert len(got) == 150
    assert contract.exchange(limit=0, started=got).refused == []
    result = contract.exchange(limit=0, finished=[outcome(d, result=i) for i, d in enumerate(got)])
    assert result.rejected == [] and result.unstorable == []
    assert {r["status"] for r in _records(contract, tasks)} == {"success"}
    stats = contract.app.stats()
    assert stats.queued + stats.running == 0
