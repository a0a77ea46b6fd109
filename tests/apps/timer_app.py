"""An app with a timer, for the timer tests."""

import os

from apscheduler.triggers.interval import IntervalTrigger

from qtasks import QueueTasks
from qtasks.timers import SyncTimer

app = QueueTasks(name="ttimer", broker_url=f"sqlite:///{os.environ['QTASKS_TEST_DIR']}/ttimer.sqlite3")


@app.task(name="test")
def test(value):
    return value * 2


timer = SyncTimer(app=app)
job = timer.add_task(5, task_name="test", trigger=IntervalTrigger(seconds=0.5))
