"""Plugins on the sync app."""

import os

from apps.plugin_common import install, install_recorder
from qtasks import QueueTasks

app = QueueTasks(name="tplugin", broker_url=f"sqlite:///{os.environ['QTASKS_TEST_DIR']}/tplugin.sqlite3")
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
