"""Plugins on the sync app."""


from apps.plugin_common import install, install_recorder
from backend_urls import urls
from qtasks import QueueTasks

app = QueueTasks(name="tplugin", **urls("tplugin"))
install(app)
install_recorder(app)


@app.task
def prio(a, b=None):
    return [a, b]


@app.task
def doubled(x):
    return x


@app.task
def resulted(text):
    return text


@app.task(echo=True)
def decided(self):
    self.ctx.plugin_error(why="sync")
