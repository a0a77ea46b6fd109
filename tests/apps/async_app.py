"""The async app the worker tests run in real worker processes."""

import asyncio
import os
import time

from qtasks import AsyncRouter
from qtasks.asyncio import QueueTasks

app = QueueTasks(name="tasync", broker_url=f"sqlite:///{os.environ['QTASKS_TEST_DIR']}/tasync.sqlite3")


@app.task(name="test")
async def test(id):
    return f"User {id} recorded"


@app.task
async def add(a, b=0):
    return a + b


@app.task(name="error_task")
async def error_task():
    return 1 / 0


@app.task
async def slow(seconds):
    await asyncio.sleep(seconds)
    return time.time()


@app.task
def block(seconds):
    time.sleep(seconds)
    return time.time()


@app.task
async def quick():
    return time.time()


@app.task
async def stamp():
    return time.time()


router = AsyncRouter()
app.include_router(router)


@router.task
async def routed_later(x):
    return f"routed {x}"
