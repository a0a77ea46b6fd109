"""The worker's threads for plain task functions (``qtasks.worker.threads.TaskThreads``)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from qtasks.worker.threads import TaskThreads


def test_results_and_exceptions_reach_the_awaiting_task():
    async def main() -> None:
        pool = TaskThreads(4)
        try:
            assert await pool.run(lambda: 41 + 1) == 42

            def boom() -> None:
                raise KeyError("no such thing")

            with pytest.raises(KeyError, match="no such thing"):
                await pool.run(boom)
            results = await asyncio.gather(*[pool.run(lambda i=i: i * i) for i in range(200)])
            assert results == [i * i for i in range(200)]
        finally:
            pool.shutdown()

    asyncio.run(main())


def test_calls_run_in_threads_up_to_the_limit():
    async def main() -> None:
        pool = TaskThreads(3)
        gate, names, lock = threading.Event(), set(), threading.Lock()

        def held() -> str:
            with lock:
                names.add(threading.current_thread().name)
            gate.wait(5)
            return threading.current_thread().name

        try:
            running = [pool.run(held) for _ in range(6)]
            await asyncio.sleep(0.2)
            assert len(names) == 3  # three threads at most; the other calls wait their turn
            assert threading.current_thread().name not in names
            gate.set()
            assert set(await asyncio.gather(*running)) == names
        finally:
            pool.shutdown()

    asyncio.run(main())


def test_a_call_whose_waiter_gave_up_still_frees_its_thread():
    async def main() -> None:
        pool = TaskThreads(1)
        release = threading.Event()
        try:
            slow = pool.run(lambda: release.wait(5) and "late")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(slow, 0.05)  # what max_time does
            release.set()
            assert await asyncio.wait_for(pool.run(lambda: "next"), 5) == "next"
        finally:
            pool.shutdown()

    asyncio.run(main())


def test_it_is_an_executor_too():
    pool = TaskThreads(2)
    try:
        assert pool.submit(pow, 2, 10).result(5) == 1024
        assert list(pool.map(str, [1, 2, 3])) == ["1", "2", "3"]
    finally:
        pool.shutdown()


def test_shutdown_cancels_what_has_not_started():
    pool = TaskThreads(1)
    gate = threading.Event()
    first = pool.submit(gate.wait, 5)
    for _ in range(500):  # until its one thread has taken the first call
        if first.running():
            break
        time.sleep(0.01)
    queued = [pool.submit(lambda: "never") for _ in range(3)]
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert first.result(5) is True
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


def test_a_call_given_up_while_queued_never_runs():
    async def main() -> None:
        pool = TaskThreads(1)
        release, ran = threading.Event(), []
        try:
            busy = pool.run(lambda: release.wait(5))
            queued = pool.run(lambda: ran.append("ran"))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(queued, 0.05)  # max_time ran out while it waited
            release.set()
            assert await busy is True
            assert await asyncio.wait_for(pool.run(lambda: "after"), 5) == "after"
            assert ran == []
        finally:
            pool.shutdown()

    asyncio.run(main())


def test_a_stopiteration_fails_its_own_call_only():
    async def main() -> None:
        pool = TaskThreads(2)

        def stops() -> None:
            raise StopIteration("out of items")

        try:
            results = await asyncio.wait_for(asyncio.gather(
                pool.run(stops), *[pool.run(lambda i=i: i) for i in range(20)],
                return_exceptions=True), 5)
            assert isinstance(results[0], RuntimeError) and "StopIteration" in str(results[0])
            assert results[1:] == list(range(20))
        finally:
            pool.shutdown()

    asyncio.run(main())
