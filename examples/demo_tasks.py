"""The demo app: two tasks on the embedded default backend (no server needed)."""

import asyncio

from qtasks import QueueTasks

app = QueueTasks(name="demo")


@app.task(name="greet")
def greet(name: str) -> str:
    return f"Hello, {name}!"


@app.task(priority=1)
async def add(a: int, b: int) -> int:
    await asyncio.sleep(0.01)
    return a + b


@app.task
def fail() -> None:
    raise ValueError("this task fails on purpose")
