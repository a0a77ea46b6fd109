"""A producer waiting on a task reads its record in one statement that also marks it watched
(so that its final write notifies). When a final write commits while that statement waits for
the record's row, the statement's snapshot still shows the task unfinished, and the final write
did not notify (the record was not watched yet): the wait must read the record again at once,
not sleep until its next poll."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from postgresbackend.conftest import POSTGRES

pytestmark = pytest.mark.slow

# The wait's poll, when no notice comes, is 1 s (core.waiting): a wait that missed the final
# write answers after about that long.
PROMPT = 0.7


def _schema(url: str) -> str:
    return parse_qs(urlsplit(url).query)["schema"][0]


def _finish_behind_a_lock(pg_url: str, uuid: str,
                          wait: Callable[[], object]) -> tuple[object, float]:
    """Hold the record's row in a final write, as a worker's finish does; start ``wait`` (a
    callable), let it block on that row, then commit. Returns what ``wait`` returned and how
    long after the commit it did. Writing the row here stands in for a worker: the test reads
    nothing back from the tables, only what the public wait returns."""
    got: list[object] = []
    done = threading.Event()
    with psycopg.connect(POSTGRES) as conn:
        conn.execute(f'UPDATE "{_schema(pg_url)}".records SET status = %s, "returning" = %s, '
                     "updated_at = %s WHERE uuid = %s", ("success", "42", time.time(), uuid))

        def run() -> None:
            got.append(wait())
            done.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        time.sleep(0.5)  # the wait is blocked on the row now
        assert not done.is_set(), "the wait did not block on the record's row"
        conn.commit()
        committed = time.monotonic()
    assert done.wait(10), "the wait never returned"
    took = time.monotonic() - committed
    thread.join()
    return got[0], took


def test_a_wait_sees_a_final_write_that_commits_while_it_marks_the_record(pg_url, apps):
    _spec, app, _runs = apps.app(pg_url)
    task = app.add_task("mark", 1)  # no worker: it stays new
    record, took = _finish_behind_a_lock(pg_url, str(task.uuid),
                                         lambda: app.wait_sync(task.uuid, 10))
    assert record is not None and record.status == "success", record
    assert took < PROMPT, f"the wait answered {took:.2f} s after the final write"


def test_the_async_wait_too(pg_url, apps):
    from qtasks.asyncio import QueueTasks

    _spec, app, _runs = apps.app(pg_url)
    producer = QueueTasks(name=app.name, broker_url=pg_url)
    task = app.add_task("mark", 1)

    async def wait() -> object:
        return await producer.wait_async(task.uuid, 10)

    record, took = _finish_behind_a_lock(pg_url, str(task.uuid), lambda: asyncio.run(wait()))
    assert record is not None and record.status == "success", record
    assert took < PROMPT, f"the wait answered {took:.2f} s after the final write"
