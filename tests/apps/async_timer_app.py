"""An async app with an async timer, run standalone beside a worker."""

import os

from apscheduler.triggers.interval import IntervalTrigger

from qtasks.asyncio import QueueTasks
from qtasks.timers import AsyncTimer

app = QueueTasks(name="tatimer",
                 broker_url=f"sqlite:///{os.environ['QTASKS_TEST_DIR']}/tatimer.sqlite3")


@app.task(name="test")
async def test(value):
    return value + 1


timer = AsyncTimer(app=app)
job = timer.add_task(5, task_name="test", trigger=IntervalTrigger(seconds=0.5))

if __name__ == "__main__":
    timer.run_forever()
