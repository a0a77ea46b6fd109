"""What a Redis user must be able to count on when things break: a worker killed mid-batch, a
Redis killed and restarted, a Redis that is down, a worker asked to stop."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from helpers import statuses, wait_until
from qtasks import QueueTasks
from qtasks.asyncio import QueueTasks as AsyncQueueTasks
from qtasks.exceptions import BackendConnectionError
from redis_servers import RedisServer, free_port

pytestmark = pytest.mark.slow


def test_a_killed_worker_s_tasks_are_run_by_the_next_one(redis_server, apps):
    spec, app = apps.app(redis_server.url, lease=2.0)
    records = app.add_tasks([("mark", (i,), {"sleep": 0.05}) for i in range(1000)])
    uuids = [str(r.uuid) for r in records]
    # 100 at once, and as many more claimed ahead: a few hundred leased when it dies
    first = apps.worker(spec, "--concurrency", "100")
    side = redis_server.client()
    wait_until(lambda: side.hlen("runs") >= 150, timeout=60, what="150 tasks run")
    first.signal(signal.SIGKILL)
    first.wait(10)
    in_flight = app.client.stats().running
    assert in_flight >= 50, f"the killed worker held {in_flight} leases: too few to prove much"

    apps.worker(spec, "--concurrency", "20")
    wait_until(lambda: statuses(app, uuids).get("success", 0) == 1000, timeout=120,
               what="all 1000 tasks to succeed")
    runs = {int(k): int(v) for k, v in side.hgetall("runs").items()}
    assert sorted(runs) == list(range(1000))  # every task ran
    duplicates = sum(1 for n in runs.values() if n > 1)
    print(f"\nkill -9 with {in_flight} leased: 1000 tasks final, {duplicates} ran twice "
          "(those the killed worker had started or finished without writing)")
    assert duplicates <= in_flight + 100  # only what the dead worker held, plus one batch
    assert app.client.stats().queued == 0 and app.client.stats().running == 0


def test_a_redis_restart_loses_no_acknowledged_task(tmp_path, redis_server, apps):
    server = RedisServer(tmp_path / "aof", "--appendonly", "yes", "--appendfsync", "always")
    try:
        # A short lease: a batch whose claim was written but whose reply died with the server
        # comes back after it. The tasks count their runs in another Redis, which stays up.
        spec, app = apps.app(server.url, lease=5.0, side=redis_server.url)
        worker = apps.worker(spec)
        acknowledged, refused = [], 0
        started = time.monotonic()
        killed = restarted = False
        i = 0
        while time.monotonic() - started < 6.0:
            elapsed = time.monotonic() - started
            if elapsed > 2.0 and not killed:
                server.kill()  # kill -9: only what reached the append-only file survives
                killed = True
            if elapsed > 3.5 and not restarted:
                server.start()  # same port, same directory: it replays the file
                restarted = True
            try:
                acknowledged.append(str(app.add_task("mark", i).uuid))
            except BackendConnectionError:
                refused += 1
            i += 1
        assert refused > 0 and len(acknowledged) > 100

        def all_done() -> bool:
            return statuses(app, acknowledged).get("success", 0) == len(acknowledged)

        try:
            wait_until(all_done, timeout=90, what="every acknowledged task to succeed")
        except AssertionError:
            raise AssertionError(f"{statuses(app, acknowledged)}\n{worker.output[-3000:]}") \
                from None
        print(f"\n{len(acknowledged)} enqueues acknowledged, {refused} refused while Redis "
              "was down; all acknowledged ones ran")
        assert worker.alive, worker.output  # it reconnected instead of exiting
        assert "cannot reach the backend" in worker.output
    finally:
        server.stop()


def test_a_producer_facing_a_dead_redis_gets_an_error_not_a_hang():
    app = QueueTasks(name="nobody", broker_url=f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(BackendConnectionError, match="not reachable"):
        app.add_task("anything")
    assert time.monotonic() - started < 30  # a hang would be the bug, not a slow error


@pytest.mark.parametrize("flavour", ["sync", "asyncio"])
def test_a_stalled_redis_gives_an_error_not_a_hang(redis_server, flavour):
    # A server that accepts connections but never answers (stopped with SIGSTOP). The asyncio
    # app reads its replies on connections of its own (the direct path): their deadline too.
    url = redis_server.url + "?socket_timeout=1"
    if flavour == "sync":
        app = QueueTasks(name="stalled", broker_url=url)
        add = app.add_task
    else:
        async_app = AsyncQueueTasks(name="stalled", broker_url=url)
        runner = asyncio.Runner()
        add = lambda name: runner.run(async_app.add_task(name))  # noqa: E731 - one loop for both
    add("warm-up")  # a pooled connection exists
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(BackendConnectionError):
            add("anything")
        assert time.monotonic() - started < 30
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    if flavour == "asyncio":  # and it works again once Redis answers
        assert add("after").status == "new"
        runner.close()


def test_sigterm_drains_running_tasks_and_leaves_the_rest_queued(redis_server, apps):
    spec, app = apps.app(redis_server.url)
    records = app.add_tasks([("mark", (i,), {"sleep": 0.5}) for i in range(30)])
    worker = apps.worker(spec, "--concurrency", "4")
    side = redis_server.client()
    wait_until(lambda: app.client.stats().running > 0, what="tasks to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    done = statuses(app, [str(r.uuid) for r in records])
    assert done.get("success", 0) >= 1
    assert set(done) <= {"success", "new"}  # nothing cut off halfway, nothing lost
    assert app.client.stats().queued == done.get("new", 0)
    assert all(int(v) == 1 for v in side.hgetall("runs").values())
    apps.worker(spec, "--concurrency", "10")
    wait_until(lambda: statuses(app, [str(r.uuid) for r in records]) == {"success": 30},
               timeout=60, what="the rest to run")
