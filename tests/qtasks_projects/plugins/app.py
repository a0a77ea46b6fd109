from qtasks.asyncio import QueueTasks
from qtasks.plugins.base import BasePlugin
from qtasks.registries import AsyncTask

app = QueueTasks()


class Rescue(BasePlugin):
    """Turns a task's plugin_error() into a result."""

    def __init__(self, name=None):
        super().__init__(name)
        self.handlers = {"task_executor_run_task_trigger_error": self.rescue}

    async def start(self, *args, **kwargs):
        pass

    async def stop(self, *args, **kwargs):
        pass

    async def trigger(self, name, **kwargs):
        handler = self.handlers.get(name)
        return handler(**kwargs) if handler else None

    def rescue(self, **kwargs):
        return {"result": f"rescued {kwargs['e'].kwargs['why']}"}


class Tag(BasePlugin):
    """Adds a field to every new task's record."""

    def trigger(self, name, **kwargs):
        if name == "qtasks_add_task_before_broker":
            return {"extra": {"source": "producer"}}
        return None


app.add_plugin(Rescue(), trigger_names=["task_executor_run_task_trigger_error"],
               component="worker")
app.add_plugin(Tag(), trigger_names=["qtasks_add_task_before_broker"])


@app.task(echo=True)
async def fragile(self: AsyncTask):
    self.ctx.plugin_error(why="a plugin decides")


if __name__ == "__main__":
    app.run_forever()
