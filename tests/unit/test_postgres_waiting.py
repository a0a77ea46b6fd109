"""The PostgreSQL backend's idle wait and row check, without a server."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

pytest.importorskip("psycopg")

from qtasks.backends.postgres.connection import AsyncListener, _has_rows


def listener() -> AsyncListener:
    return AsyncListener(SimpleNamespace(app="x"), "qtasks_wake")  # type: ignore[arg-type]


def test_an_idle_wait_ends_at_the_notice_or_at_its_deadline():
    async def scenario():
        waiting = listener()
        seen = waiting.generation
        asyncio.get_running_loop().call_later(0.05, waiting._bump)
        started = time.monotonic()
        await waiting.wait_change(seen, 5)  # the notice ends it
        woken = time.monotonic() - started
        started = time.monotonic()
        await waiting.wait_change(waiting.generation, 0.05)  # nothing comes: the deadline
        timed_out = time.monotonic() - started
        started = time.monotonic()
        await waiting.wait_change(seen, 5)  # a notice already came after `seen`: no wait
        at_once = time.monotonic() - started
        return woken, timed_out, at_once

    woken, timed_out, at_once = asyncio.run(scenario())
    assert 0.04 <= woken < 4
    assert 0.04 <= timed_out < 4
    assert at_once < 1  # it would have waited the 5 s


def test_an_idle_wait_ends_when_the_listener_breaks_and_can_be_cancelled():
    async def scenario():
        waiting = listener()

        def broke():
            waiting.broken = True
            waiting._bump()

        asyncio.get_running_loop().call_later(0.05, broke)
        await asyncio.wait_for(waiting.wait_change(waiting.generation, 5), 4)
        other = listener()
        task = asyncio.ensure_future(other.wait_change(other.generation, 5))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_rows_are_fetched_only_when_the_statement_returned_columns():
    def result(nfields):
        return SimpleNamespace(pgresult=SimpleNamespace(nfields=nfields))

    assert _has_rows(result(3))
    assert not _has_rows(result(0))  # an UPDATE without RETURNING, or SELECT with no column
    assert not _has_rows(SimpleNamespace(pgresult=None))
    assert _has_rows(SimpleNamespace(description=["uuid"]))  # a cursor that is not psycopg's
    assert not _has_rows(SimpleNamespace(description=None))
    assert not _has_rows(SimpleNamespace(description=[]))
