"""The async app the worker tests run in real worker processes."""

import asyncio
import time

from apps.marks import MARKS, mark
from backend_urls import urls
from qtasks import AsyncRouter, TaskCancelError
from qtasks.asyncio import QueueTasks

app = QueueTasks(name="tasync", **urls("tasync"))


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


_overlap = [0]


@app.task
async def peek_after(seconds, tag):
    """Sleeps, then returns the status of the task whose uuid the test left under ``tag``."""
    await asyncio.sleep(seconds)
    return (await app.get((MARKS.parent / f"peek-{tag}").read_text())).status


@app.task
async def overlap():
    """How many ``overlap`` tasks were running in this worker process when this one ran."""
    _overlap[0] += 1
    seen = _overlap[0]
    await asyncio.sleep(0)  # let the others run
    _overlap[0] -= 1
    return seen


router = AsyncRouter()
app.include_router(router)


@router.task
async def routed_later(x):
    return f"routed {x}"


# -- run options (issue 3) ------------------------------------------------------------------


@app.task(retry=2)
async def flaky(tag):
    mark(f"flaky {tag}")
    raise KeyError(tag)


@app.task(retry=5, retry_on_exc=[LookupError])
async def picky(kind, tag):
    mark(f"picky {tag}")
    raise (KeyError if kind == "key" else ZeroDivisionError)(tag)


@app.task(retry=2, retry_delay=0.3)
async def backoff(tag):
    mark(f"backoff {tag} {time.time()}")
    raise ValueError(tag)


@app.task(retry=3)
async def lucky(tag, succeed_on=2):
    from helpers import marks

    mark(f"lucky {tag}")
    if marks().count(f"lucky {tag}") < succeed_on:
        raise RuntimeError("not yet")
    return {"tag": tag}


@app.task(max_time=0.5)
async def too_slow():
    await asyncio.sleep(3)
    return 1


async def add_two(v):
    return v + 2


@app.task(generate_handler=add_two)
async def doubles(n):  # the docs' yield example: n + 1 .. n + 5, each plus 2
    for i in range(1, 6):
        yield n + i


@app.task(generate_handler=lambda v: v + 100)
async def gen_async_handler(n):
    for i in range(n):
        yield i


@app.task(decode=lambda r: f'{{"wrapped": {r}}}')
async def decoded(x):
    return x


@app.task(decode=lambda r: "not json")
async def bad_decode():
    return 1


@app.task
async def cancel_me(reason):
    raise TaskCancelError(reason)


# -- echo and ctx ---------------------------------------------------------------------------


@app.task(echo=True)
async def who(self):
    meta = await self.ctx.get_metadata()
    return [str(self.ctx.task_uuid), self.task_name, type(self.ctx.get_config()).__name__,
            meta.status, type(self.ctx.get_component("config")).__name__,
            self.ctx.get_logger().name, type(self).__name__]


@app.task(echo=True)
async def parent(self, x):
    child = await self.add_task(x, task_name="add", timeout=30)
    return child.returning * 10


@app.task(echo=True)
async def self_cancel(self, reason):
    self.ctx.cancel(reason)
