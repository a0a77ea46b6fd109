"""An idle PostgreSQL worker waits for a notice right after a round trip whose claim found the
queue empty, without claiming again first. A task must never slip between that claim and the
wait: each of these would then sit until the worker's idle wait ends by itself (10 s)."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slow

# far below the worker's idle wait (IDLE_BLOCK, 10 s): a missed notice shows as a timeout
PROMPT = 4.0


def test_back_to_back_round_trips_are_all_picked_up_at_once(pg_url, apps, side):
    """Each task is enqueued the moment the previous one ran (its side effect is seen), while
    the worker is still writing that task's outcome in the statement that also claims, and
    then deciding to wait: the enqueue's notice lands in every phase of that."""
    spec, app, runs = apps.app(pg_url)
    apps.worker(spec)
    assert app.add_task("mark", -1, timeout=30).returning == -1  # the worker is up
    slowest, uuids = 0.0, []
    for i in range(150):
        began = time.monotonic()
        uuids.append(str(app.add_task("mark", i).uuid))
        while side.hget(runs, str(i)) is None:
            assert time.monotonic() - began < PROMPT, f"task {i} was not picked up at once"
            time.sleep(0.0005)
        slowest = max(slowest, time.monotonic() - began)
    print(f"slowest of 150 round trips: {slowest * 1000:.0f} ms")
    records = [app.wait_sync(u, 10) for u in uuids]
    assert [r.returning for r in records] == list(range(150))


def test_a_delayed_task_runs_when_due_on_an_idle_worker(pg_url, apps, side):
    """The due time reaches the waiting worker from its last claim (no task arrives to wake
    it): a task delayed by 1.5 s runs after about that long, not after the idle wait."""
    spec, app, _runs = apps.app(pg_url)
    apps.worker(spec)
    assert app.add_task("mark", 0, timeout=30).returning == 0
    time.sleep(0.5)  # idle, waiting
    sent = time.monotonic()
    task = app.add_task("mark", 1, delay=1.5)
    record = app.wait_sync(task.uuid, 1.5 + PROMPT)
    assert record is not None and record.status == "success", record
    took = time.monotonic() - sent
    assert took >= 1.4, f"ran after {took:.2f} s, before it was due"
