import logging

import pydantic
import routes
import shared_jobs  # noqa: F401  (registers its shared task)

from qtasks import QueueTasks
from qtasks.executors.base import BaseTaskExecutor
from qtasks.middlewares import TaskMiddleware
from qtasks.plugins.testing.sync_test import SyncTestPlugin
from qtasks.registries import SyncTask

app = QueueTasks()
app.config.logs_default_level_server = logging.INFO
app.config.running_older_tasks = True
app.include_router(routes.router)
app.add_plugin(SyncTestPlugin(), trigger_names=["worker_execute_before",
                                                "worker_remove_finished_task"],
               component="worker")


class Stamp(TaskMiddleware):
    def __init__(self, task_executor: BaseTaskExecutor):
        super().__init__(task_executor)

    def __call__(self):
        self.task_executor._result = f"[{self.task_executor._result}]"
        return self.task_executor


@app.task(name="square")
def square(number: int):
    return number * number


@app.task(name="relay", echo=True)
def relay(self: SyncTask, number: int):
    task = self.add_task(number, task_name="square", timeout=30)
    return f"{task.task_name} gave {task.returning}"


@app.task(retry=2, retry_on_exc=[ZeroDivisionError])
def divide(a: int, b: int):
    return a / b


def tenfold(value):
    return value * 10


@app.task(echo=True, generate_handler=tenfold)
def count(self: SyncTask, n: int):
    for i in range(n):
        self.ctx.get_logger().info("step %s", i)
        yield i


class Item(pydantic.BaseModel):
    name: str
    value: int


@app.task(test=True, middlewares_after=[Stamp])
def describe(item: Item):
    return f"{item.name}={item.value}"


if __name__ == "__main__":
    app.run_forever()
