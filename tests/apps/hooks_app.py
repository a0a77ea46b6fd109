"""Middlewares and events on the sync app."""


from apps.marks import mark
from backend_urls import urls
from qtasks import QueueTasks, TaskCancelError
from qtasks.middlewares import TaskMiddleware

app = QueueTasks(name="thooks", **urls("thooks"))


class Double(TaskMiddleware):
    def __call__(self):
        self.task_executor.args[0] *= 2


class Wrap(TaskMiddleware):
    def __call__(self):
        self.task_executor.result = {"wrapped": self.task_executor.result}


class Outer(TaskMiddleware):
    def __call__(self):
        mark(f"outer {self.task_executor.task_func.name}")


class OuterAfter(TaskMiddleware):
    def __call__(self):
        mark(f"outer-after {self.task_executor.task_func.name}")


app.add_middleware(Outer)
app.add_middleware(OuterAfter, position="after")


@app.task(middlewares_before=[Double], middlewares_after=[Wrap])
def shaped(x):
    mark(f"run shaped {x}")
    return x + 1


@app.task
def fails():
    raise ValueError("boom")


@app.task
def cancels():
    raise TaskCancelError("stop here")


@app.events.on.worker_running()
def running(worker, number):
    mark(f"event worker_running {number}")


@app.events.on.task_running()
def task_running(worker, task_func, task_broker):
    mark(f"event task_running {task_func.name}")


@app.events.on.task_success()
def success(worker, task_func, task_broker, model):
    mark(f"event task_success {task_func.name} {model.returning}")


@app.events.on.task_error()
def error(worker, task_func, task_broker, model):
    mark(f"event task_error {task_func.name} {model.traceback.strip().splitlines()[-1]}")


@app.events.on.task_cancel()
def cancel(worker, task_func, task_broker, model):
    mark(f"event task_cancel {task_func.name} {model.cancel_reason}")


@app.events.on.task_stopping()
def broken_handler(worker, task_func, task_broker, model):
    raise RuntimeError("a broken handler must not break the task")


@app.events.on.starting()
def starting(starter, worker, broker):
    mark(f"event starting {type(broker).__name__}")


@app.events.on.worker_stopping()
def worker_stopping(worker, number):
    mark("event worker_stopping")


@app.events.on.stopping()
def stopping(starter, worker, broker):
    mark("event stopping")
