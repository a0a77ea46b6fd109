"""Redis Cluster and Sentinel with real worker processes (the contract suite runs on both as
well: tests/backends, parameters ``redis-cluster`` and ``redis-sentinel``)."""

from __future__ import annotations

import asyncio

import pytest

from helpers import wait_until
from qtasks import QueueTasks
from qtasks.asyncio import QueueTasks as AsyncQueueTasks
from qtasks.backends.redis.protocol import Keys
from qtasks.exceptions import BackendError

pytestmark = pytest.mark.slow


def test_apps_on_different_cluster_masters_each_run_their_tasks(redis_cluster, redis_server,
                                                                 apps):
    # Each app's keys share one hash tag, so each app lives on one master; pick two apps whose
    # tags land on different masters.
    names, masters = [], set()
    for i in range(50):
        name = f"cl{i}"
        master = redis_cluster.owner(Keys(name).route)
        if master not in masters:
            names.append(name)
            masters.add(master)
        if len(names) == 2:
            break
    assert len(masters) == 2
    for name in names:
        spec, app = apps.app(redis_cluster.url, name=name, side=redis_server.url)
        apps.worker(spec)
        records = app.add_tasks([("mark", (i,)) for i in range(200)])
        assert [app.wait_sync(r.uuid, 30).returning for r in records] == list(range(200))
        assert app.add_task("mark", 7, timeout=10).returning == 7
        assert _async_wait(redis_cluster.url, name, 8) == 8


def _async_wait(url: str, name: str, value: int) -> int:
    """An asyncio producer's round trip: told of the result where redis-py has pub/sub for
    an asyncio Cluster client (8 and newer), reading it again after pauses before that."""
    async def run() -> int:
        app = AsyncQueueTasks(name=name, broker_url=url)
        try:
            record = await asyncio.wait_for(app.add_task("mark", value, timeout=10), 30)
            return record.returning
        finally:
            await app.transport.close()

    return asyncio.run(run())


def test_a_worker_keeps_going_across_a_sentinel_failover(redis_sentinel, redis_server, apps):
    # wait_replicas=1: an enqueue is acknowledged only once the replica has it, so the failover
    # (which promotes that replica) cannot lose it.
    spec, app = apps.app(redis_sentinel.url + "?wait_replicas=1", name="failover",
                         side=redis_server.url)
    worker = apps.worker(spec)
    before = redis_sentinel.current_master()
    first = app.add_tasks([("mark", (i,)) for i in range(100)])
    assert [app.wait_sync(r.uuid, 30).status for r in first] == ["success"] * 100
    with redis_sentinel.sentinels[0].client() as sentinel:
        sentinel.execute_command("SENTINEL", "FAILOVER", redis_sentinel.service)
    wait_until(lambda: redis_sentinel.current_master() != before, timeout=30,
               what="the replica to become master")

    def enqueue_after_failover():
        try:
            return app.add_tasks([("mark", (i,)) for i in range(100, 200)])
        except BackendError:  # the client still talks to the old master, or the replica
            # has not caught up (wait_replicas): try again
            return None

    second = wait_until(enqueue_after_failover, timeout=30, interval=0.5,
                        what="an enqueue to the new master")
    assert [app.wait_sync(r.uuid, 60).status for r in second] == ["success"] * 100
    assert worker.alive, worker.output


def test_the_hot_path_never_scans(redis_server, apps):
    # Every command a drain sends, as MONITOR sees it (inside scripts too): no KEYS or SCAN, no
    # unbounded reads of a whole collection, no LREM, no classic PUBLISH (it would be broadcast
    # to every node of a cluster).
    spec, app = apps.app(redis_server.url, name="hygiene")
    apps.worker(spec)
    assert app.add_task("mark", 0, timeout=10).returning == 0  # warmed up
    with redis_server.monitored() as seen:
        records = app.add_tasks([("mark", (i,)) for i in range(300)])
        assert [app.wait_sync(r.uuid, 30).returning for r in records] == list(range(300))
        app.add_task("mark", 1, timeout=10)
    commands = {c.split()[0].upper() for c in seen}
    assert {"ZPOPMIN", "BZPOPMIN"} <= commands
    assert commands & {"FCALL", "EVALSHA"}, commands  # the backend's code, as a function or script
    forbidden = {"KEYS", "SCAN", "HSCAN", "ZSCAN", "SMEMBERS", "LREM", "LRANGE", "PUBLISH",
                 "FLUSHDB"}
    assert not commands & forbidden, commands & forbidden
    prefix = app.backend.keys.prefix
    for command in seen:  # ranges are bounded: a LIMIT, or one element
        upper = command.upper()
        if upper.startswith("HGETALL"):  # one record (a task's own hash), never an index
            assert command.split()[1].startswith(prefix + "r:"), command
        if upper.startswith(("ZRANGEBYSCORE", "ZREVRANGEBYSCORE")):
            assert "LIMIT" in upper, command
        if upper.startswith("ZRANGE ") and "BYSCORE" not in upper:
            assert 0 <= int(upper.split()[3]) < 10_000, command  # a head, never "0 -1"


def test_the_url_s_database_index_keeps_apps_apart(redis_server, apps):
    # The same app on databases 3 and 4 of one server: two queues that never meet.
    base = redis_server.url.rsplit("/", 1)[0]
    spec, three = apps.app(f"{base}/3", name="indexed")
    four = QueueTasks(name="indexed", broker_url=f"{base}/4")
    apps.apps.append(four)
    queued = four.add_task("mark", 4)
    apps.worker(spec)  # serves database 3 only
    assert three.add_task("mark", 3, timeout=10).returning == 3
    assert three.get(queued.uuid) is None
    assert four.get(queued.uuid).status == "new"
    assert (three.stats().queued, four.stats().queued) == (0, 1)
