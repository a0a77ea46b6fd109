"""A QTasks-style app built from component objects: a worker object with its own config,
a default executor class, and plugins added to the worker before the app exists."""

import time

from apps.marks import mark
from backend_urls import urls
from qtasks import QueueTasks
from qtasks.configs import QueueConfig
from qtasks.executors import SyncTaskExecutor
from qtasks.plugins import SyncRetryPlugin
from qtasks.plugins.testing.sync_test import SyncTestPlugin
from qtasks.workers import SyncThreadWorker


class Tagged(SyncTaskExecutor):
    """Every task without an executor of its own runs through this one."""

    def after_execute(self):
        super().after_execute()
        self._result = {"by": "Tagged", "value": self._result}


worker = SyncThreadWorker(config=QueueConfig(max_tasks_process=3))
worker.task_executor = Tagged
worker.add_plugin(SyncTestPlugin(), ["worker_execute_before", "worker_remove_finished_task"])
worker.add_plugin(SyncRetryPlugin(), ["worker_task_error_retry"])

app = QueueTasks(name="tcomponents", worker=worker, **urls("tcomponents"))


@app.task(test=True)
def nap(i):
    mark(f"start {i} {time.time()}")
    time.sleep(0.4)
    mark(f"end {i} {time.time()}")
    return i


@app.task(retry=2, retry_on_exc=[KeyError])
def flaky(key):
    mark(f"flaky {key}")
    raise KeyError(key)
