"""Checked by mypy in tests/unit/test_typing.py (not collected by pytest: no test_ prefix).

A line ending in an E-mark (error) or N-mark (note) must get that mypy message; no other line
may get one.
"""

from typing import reveal_type

from qtasks import AsyncRouter, QueueTasks, SyncRouter, shared_task
from qtasks.asyncio import QueueTasks as AsyncQueueTasks

app = QueueTasks(broker_url="memory://typing")
aapp = AsyncQueueTasks(broker_url="memory://typing-async")
router = SyncRouter()
arouter = AsyncRouter()


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="mul", priority=2)
def mul(x: int, y: int = 1) -> int:
    return x * y


@aapp.task
async def fetch(url: str) -> bytes:
    return b""


@shared_task
def shared(a: str) -> None: ...


@shared_task(awaiting=True)
async def ashared(a: str) -> None: ...


@router.task
def routed(a: str) -> str:
    return a


@arouter.task(priority=1)
async def arouted(a: str) -> str:
    return a


reveal_type(add)  # N: SyncTask[[x: int, y: int], int]
reveal_type(mul.func)  # N: def (x: int, y: int =) -> int
reveal_type(fetch)  # N: AsyncTask[[url: str]
reveal_type(ashared)  # N: AsyncTask[[a: str]
reveal_type(routed)  # N: SyncTask[[a: str], str]
reveal_type(arouted)  # N: AsyncTask[[a: str]

add(1, 2).add_task()
add("a", 2)  # E: incompatible type "str"; expected "int"
mul(1, y="z")  # E: incompatible type "str"; expected "int"
fetch(3)  # E: incompatible type "int"; expected "str"
shared(1)  # E: incompatible type "int"; expected "str"
routed(None)  # E: incompatible type "None"; expected "str"
record = add.add_task(1, 2, priority=3, timeout=5)
