"""Finished records and dead letters expire, so a worker that runs for ever keeps Redis memory
bounded; deleting finished records never touches a task a worker still holds."""

from __future__ import annotations

import asyncio
import time

import pytest

from helpers import wait_until
from qtasks import QueueTasks
from qtasks.backends.base import Outcome
from qtasks.backends.transport import worker_info
from redis_servers import RedisServer, rss_kb, used_memory

pytestmark = pytest.mark.slow


def test_100k_tasks_drained_with_expiry_leave_memory_bounded(redis_server, apps):
    url = redis_server.url + "?result_ttl=2"
    spec, app = apps.app(url, name="soak", side=redis_server.url)
    side = redis_server.client()
    side.config_set("maxmemory-policy", "noeviction")
    baseline = used_memory(side)
    worker = apps.worker(spec, "--concurrency", "20")
    total, samples, rss = 100_000, [], []
    for start in range(0, total, 10_000):
        app.add_tasks([("mark", (i % 1000,)) for i in range(start, start + 10_000)])
        wait_until(lambda: app.client.stats().queued < 5_000, timeout=120,
                   what="the worker to catch up")
        samples.append(used_memory(side))
        rss.append(rss_kb(worker.proc.pid))
    wait_until(lambda: app.client.stats().queued == 0 and app.client.stats().running == 0,
               timeout=120, what="the drain to end")
    assert sum(int(v) for v in side.hgetall("runs").values()) == total
    # once the TTL has passed, the records go with the worker's next heartbeats and exchanges
    wait_until(lambda: app.client.stats().records < 1_000, timeout=60,
               what="finished records to expire")
    keys = side.dbsize()
    after = used_memory(side)
    print(f"\n100k tasks, result_ttl=2 s: Redis used_memory {baseline / 2**20:.1f} MiB before, "
          f"peak {max(samples) / 2**20:.1f} MiB while draining, {after / 2**20:.1f} MiB after "
          f"({keys} keys left); worker RSS {rss[0] // 1024}..{max(rss) // 1024} MiB")
    assert keys < 2_000
    assert after < baseline + 8 * 2**20
    # the worker does not grow with the number of tasks it has run
    assert max(rss[3:]) < rss[2] + 20 * 1024


def test_deleting_finished_records_spares_a_task_a_worker_still_holds(redis_server):
    app = QueueTasks(name="spare", broker_url=redis_server.url)
    transport = app.transport

    async def scenario():
        done, held = app._prepare("job", (), {}, 0, None, "default"), \
            app._prepare("job", (), {}, 0, None, "default")
        await transport.enqueue([done, held])
        first = await transport.exchange("w1", ["default"], limit=1, lease=30.0, start=1)
        from qtasks.backends.base import Outcome

        (d,) = first.deliveries
        await transport.exchange("w1", ["default"], limit=0, finished=[Outcome(
            delivery=d, uuid=d.uuid, status="success", task_name="job", priority=0,
            returning_json="1")], lease=30.0)
        prefetched = await transport.exchange("w1", ["default"], limit=1, lease=30.0)
        assert [x.uuid for x in prefetched.deliveries] == [held.uuid]
        assert await transport.cancel(held.uuid, "not wanted")  # final, message still leased
        removed = await transport.delete_finished()
        await transport.close()
        return done.uuid, held.uuid, removed

    done_uuid, held_uuid, removed = asyncio.run(scenario())
    assert removed == 1
    assert app.get(done_uuid) is None
    assert app.get(held_uuid).status == "cancel"  # its message is leased: the record stays


def test_dead_letters_are_capped_and_expire(tmp_path):
    # Redis trims a stream only by whole nodes ("~"): one entry per node here, so the trim is
    # exact and the test can count what remains.
    server = RedisServer(tmp_path / "dead", "--appendonly", "no",
                         "--stream-node-max-entries", "1")
    app = QueueTasks(name="dead",
                     broker_url=server.url + "?dead_letter_max=3&dead_letter_ttl=1.5")
    transport = app.transport

    async def dead_letter(count: int) -> list[str]:
        tasks = [app._prepare("job", (i,), {}, 0, None, "default") for i in range(count)]
        await transport.enqueue(tasks)
        got = await transport.exchange("w", ("default",), limit=count, lease=30.0,
                                       start=count)
        await transport.exchange("w", ("default",), limit=0, lease=30.0, finished=[
            Outcome(delivery=d, uuid=d.uuid, status="error", task_name="job", priority=0,
                    traceback="Boom", dead_letter="Boom") for d in got.deliveries])
        return [t.uuid for t in tasks]

    async def heartbeat() -> None:  # a worker's heartbeat trims the dead letters by age
        await transport.heartbeat(worker_info("w", time.time(), 1), [], 30.0)

    loop = asyncio.new_event_loop()
    try:
        uuids = loop.run_until_complete(dead_letter(5))
        # the cap: the newest three stay
        assert sorted(d.uuid for d in app.dead_letters()) == sorted(uuids[2:])
        time.sleep(1.6)
        newer = loop.run_until_complete(dead_letter(1))
        loop.run_until_complete(heartbeat())
        # the age: older than 1.5 s, gone; the new one stays
        assert [d.uuid for d in app.dead_letters()] == newer
        loop.run_until_complete(transport.close())
    finally:
        loop.close()
        server.stop()
