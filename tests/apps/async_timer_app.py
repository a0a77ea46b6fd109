"""An async app with an async timer, run standalone beside a worker."""


from apscheduler.triggers.interval import IntervalTrigger

from backend_urls import urls
from qtasks.asyncio import QueueTasks
from qtasks.timers import AsyncTimer

app = QueueTasks(name="tatimer",
                 **urls("tatimer"))


@app.task(name="test")
async def test(value):
    return value + 1


timer = AsyncTimer(app=app)
job = timer.add_task(5, task_name="test", trigger=IntervalTrigger(seconds=0.5))

if __name__ == "__main__":
    timer.run_forever()
