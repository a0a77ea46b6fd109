"""An app with a timer, for the timer tests."""


from apscheduler.triggers.interval import IntervalTrigger

from backend_urls import urls
from qtasks import QueueTasks
from qtasks.timers import SyncTimer

app = QueueTasks(name="ttimer", **urls("ttimer"))


@app.task(name="test")
def test(value):
    return value * 2


timer = SyncTimer(app=app)
job = timer.add_task(5, task_name="test", trigger=IntervalTrigger(seconds=0.5))
