import asyncio

from app import add

from qtasks.utils.tasks.async_task_utils import AsyncTaskUtils


async def main():
    calls = [add(2, 3, timeout=30), add(3, 4, timeout=30), add(10, 5, timeout=30)]
    print("objects", [c.args for c in calls])
    done = await asyncio.gather(*(c.add_task() for c in calls))
    print("gathered", [t.returning for t in done])
    chain = AsyncTaskUtils.chain(add(2, 2), add(4), add(8))
    print("chain", [t.returning for t in await chain.get(timeout=30)])


asyncio.run(main())
