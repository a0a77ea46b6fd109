import time

from libs.task_executor import CountingExecutor
from libs.task_middleware import TrimMiddleware

from qtasks import QueueTasks
from qtasks.configs import QueueConfig
from qtasks.logs import Logger
from qtasks.registries import SyncTask
from qtasks.starters import SyncStarter
from qtasks.workers import SyncThreadWorker

worker = SyncThreadWorker(config=QueueConfig(max_tasks_process=2))
app = QueueTasks(worker=worker, log=Logger("components_app"))


@app.task(executor=CountingExecutor, middlewares_before=[TrimMiddleware])
def greet(name: str, greeting: str = "hello"):
    return f"{greeting} {name}"


@app.task(echo=True)
def nap(self: SyncTask, seconds: float):
    started = time.time()
    time.sleep(seconds)
    self.ctx.get_logger().info("napped %s", seconds)
    return [started, time.time()]


if __name__ == "__main__":
    app.run_forever(starter=SyncStarter(worker=worker))
