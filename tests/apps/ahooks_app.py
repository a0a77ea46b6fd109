"""Middlewares and events on the async app, with async middlewares and handlers."""


from apps.marks import mark
from backend_urls import urls
from qtasks.asyncio import QueueTasks
from qtasks.events import AsyncEvents
from qtasks.middlewares import TaskMiddleware

app = QueueTasks(name="tahooks", events=AsyncEvents(),
                 **urls("tahooks"))


class Double(TaskMiddleware):
    async def __call__(self):
        self.task_executor.args[0] *= 2


class Wrap(TaskMiddleware):
    async def __call__(self):
        self.task_executor.result = {"wrapped": self.task_executor.result}


@app.task(middlewares_before=[Double], middlewares_after=[Wrap])
async def shaped(x):
    return x + 1


@app.task
async def fails():
    raise ValueError("boom")


@app.events.on.task_success()
async def success(worker, task_func, task_broker, model):
    mark(f"event task_success {task_func.name} {model.returning}")


@app.events.on.task_error()
async def error(worker, task_func, task_broker, model):
    mark(f"event task_error {task_func.name} {model.status}")


@app.events.on.stopping()
async def stopping(starter, worker, broker):
    mark("event stopping")
