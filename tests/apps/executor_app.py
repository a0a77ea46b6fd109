"""Custom executor classes (``executor=``), as QTasks projects write them, on both apps."""

import threading

from apps.marks import mark
from backend_urls import urls
from qtasks import QueueTasks
from qtasks import asyncio as qasync
from qtasks.executors import AsyncTaskExecutor, SyncTaskExecutor
from qtasks.executors.base import BaseTaskExecutor
from qtasks.middlewares import TaskMiddleware
from qtasks.plugins.base import BasePlugin

app = QueueTasks(name="texec", **urls("texec"))
aapp = qasync.QueueTasks(name="taexec", **urls("taexec"))


class Seen(TaskMiddleware):
    """A QTasks middleware: it is given the executor object."""

    async def __call__(self):
        executor: BaseTaskExecutor = self.task_executor
        mark(f"middleware {type(executor).__name__} {executor.task_broker.name} "
             f"{list(executor._args)}")
        return executor


class Doubling(AsyncTaskExecutor):
    """Doubles the arguments before the task and wraps its result after it."""

    async def before_execute(self):
        await super().before_execute()
        self._args = [a * 2 for a in self._args]

    async def after_execute(self):
        await super().after_execute()
        self._result = {"wrapped": self._result}


class Blocking(SyncTaskExecutor):
    """A blocking executor: its steps run in a thread, not on the worker's loop."""

    def run_task(self):
        mark(f"run_task in {threading.current_thread().name}")
        return super().run_task() + 100

    def decode(self):
        return f"decoded {self._result}"


class Upper(BasePlugin):
    """A plugin on the executor's args trigger: upper-cases string arguments."""

    def trigger(self, name, **kwargs):
        if name == "task_executor_args_replace":
            mark(f"plugin sees {type(kwargs['task_executor']).__name__}")
            info = ", ".join(f"{m.name}:{getattr(m.annotation, '__name__', m.annotation)}"
                             for m in kwargs["args_info"])
            mark(f"args_info {info}")
            return {"args": [a.upper() if isinstance(a, str) else a for a in kwargs["args"]]}
        return None


app.add_plugin(Upper(), ["task_executor_args_replace"], component="worker")


@app.task(executor=Doubling, middlewares_before=[Seen])
def add(a, b):
    return a + b


@app.task(executor=Blocking)
def mul(a, b):
    return a * b


@app.task(executor=Doubling)
def shout(word: str):
    return word


@app.task(executor=Doubling, max_time=0.3)
async def too_slow():
    import asyncio

    await asyncio.sleep(5)


@app.task(executor=Blocking, retry=1)
def fails_once(marker):
    mark(f"attempt {marker}")
    raise ValueError("boom")


@aapp.task(executor=Doubling, middlewares_before=[Seen])
async def aadd(a, b):
    return a + b


@aapp.task(executor=Blocking)
async def amul(a, b):
    return a * b


class PassThrough(SyncTaskExecutor):
    """A blocking executor that changes nothing."""


class BreaksBefore(SyncTaskExecutor):
    def before_execute(self):
        raise ValueError("refused before the task")


@app.task(executor=PassThrough)
def child(n):
    return n * 2


@app.task(executor=PassThrough, echo=True)
def parent(self, n):
    # waits for another task: with one slot, the worker lends it back while this waits
    return self.add_task(n, task_name="child", timeout=20).returning


@app.task(executor=PassThrough, max_time=0.3)
def blocks_too_long():
    import time

    time.sleep(2)


@app.task(executor=BreaksBefore)
def never_runs():
    mark("never_runs ran")


class OldStyle(SyncTaskExecutor):
    """Overrides QTasks' run_task_gen, which qtasks never calls: the worker says so."""

    def run_task_gen(self, gen):
        return list(gen)


@app.task(executor=OldStyle)
def counts(n):
    yield from range(n)
