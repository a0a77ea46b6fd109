"""Plugins on the async app."""


from apps.plugin_common import install
from backend_urls import urls
from qtasks.asyncio import QueueTasks

app = QueueTasks(name="taplugin",
                 **urls("taplugin"))
install(app)


@app.task
async def prio(a, b=None):
    return [a, b]


@app.task
async def doubled(x):
    return x


@app.task
async def resulted(text):
    return text


@app.task(echo=True)
async def decided(self):
    self.ctx.plugin_error(why="async")
