import asyncio

from app import add, app, pipeline, plain, stop_here, stream, too_slow

from qtasks.stats.async_stats import AsyncStats


async def main():
    print("add", (await add.add_task(2, 3, timeout=30)).returning)
    print("pipeline", (await pipeline.add_task(5, timeout=30)).returning)
    slow = await too_slow.add_task(timeout=30)
    print("too_slow", slow.status, "Time limit" in slow.traceback)
    cancelled = await stop_here.add_task(timeout=30)
    print("stop_here", cancelled.status, cancelled.cancel_reason)
    print("plain", (await plain.add_task(4, timeout=30)).returning)
    print("stream", (await stream.add_task(3, timeout=30)).returning)
    many = await asyncio.gather(*(add.add_task(i, i, timeout=30) for i in range(20)))
    print("gather", sum(t.returning for t in many))
    quick = await app.add_task("add", 1, 1)
    print("fresh", quick.status)
    inspected = await AsyncStats(app=app).inspect()
    print("inspect", "pipeline" in inspected.tasks())


asyncio.run(main())
