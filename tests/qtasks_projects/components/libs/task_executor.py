from typing import Any

from qtasks.executors import SyncTaskExecutor


class CountingExecutor(SyncTaskExecutor):
    """Wraps every result with how many arguments the task got."""

    def __init__(self, task_func, task_broker, log=None, plugins=None):
        super().__init__(task_func, task_broker, log, plugins)

    def after_execute(self):
        super().after_execute()
        self._result = {"args": len(self._args), "result": self._result}

    def decode(self) -> Any:
        return self._result
