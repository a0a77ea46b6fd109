import asyncio

from app import fragile


async def main():
    task = await fragile.add_task(timeout=30)
    print("fragile", task.status, task.returning, task.source)


asyncio.run(main())
