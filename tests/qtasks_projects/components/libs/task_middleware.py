from qtasks.executors.base import BaseTaskExecutor
from qtasks.middlewares import TaskMiddleware


class TrimMiddleware(TaskMiddleware):
    def __init__(self, task_executor: "BaseTaskExecutor"):
        super().__init__(task_executor)

    def __call__(self):
        self.task_executor._args = [a.strip() if isinstance(a, str) else a
                                    for a in self.task_executor._args]
        return self.task_executor
