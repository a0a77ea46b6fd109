"""``transport.Kept``: a call that takes messages survives its caller's cancellation, and its
answer waits for the next ``take``; a failure reaches the caller once and nothing else."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from qtasks.backends.transport import Kept


def _run(coro):
    errors: list[dict] = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        try:
            return await coro
        finally:
            # A task whose error nobody read is reported when it is collected: let the loop
            # drop what it still holds of the tasks, then collect.
            for _ in range(3):
                await asyncio.sleep(0)
                gc.collect()

    return asyncio.run(main()), errors


def test_the_caller_gets_the_answer():
    kept = Kept()

    async def scenario():
        async def call():
            await asyncio.sleep(0.01)
            return "taken"

        answer = await kept.call(call())
        return answer, await kept.take(waiting=False)

    (answer, later), errors = _run(scenario())
    assert (answer, later, errors) == ("taken", [], [])


def test_a_cancelled_caller_leaves_the_answer_for_the_next_take():
    kept = Kept()

    async def scenario():
        release = asyncio.Event()

        async def call():
            await release.wait()
            return "taken"

        caller = asyncio.ensure_future(kept.call(call()))
        await asyncio.sleep(0.01)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert await kept.take(waiting=False) == []  # not answered yet: stays kept
        release.set()
        return await kept.take()

    answers, errors = _run(scenario())
    assert (answers, errors) == (["taken"], [])


def test_a_failure_reaches_the_caller_and_is_reported_nowhere_else():
    kept = Kept()

    async def scenario():
        async def call():
            await asyncio.sleep(0.01)
            raise ConnectionError("gone")

        try:
            await kept.call(call())
        except ConnectionError as exc:
            told = str(exc)
        return told, await kept.take(waiting=False)

    (told, later), errors = _run(scenario())
    assert (told, later, errors) == ("gone", [], [])


def test_a_failure_after_the_caller_left_is_logged_by_take(caplog):
    kept = Kept()

    async def scenario():
        async def call():
            await asyncio.sleep(0.02)
            raise ConnectionError("gone")

        caller = asyncio.ensure_future(kept.call(call()))
        await asyncio.sleep(0.005)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        return await kept.take()

    with caplog.at_level(logging.WARNING, logger="qtasks.backends"):
        answers, errors = _run(scenario())
    assert (answers, errors) == ([], [])
    assert "a kept round trip failed (gone)" in caplog.text
