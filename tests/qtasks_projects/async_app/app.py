import asyncio

from qtasks.asyncio import QueueTasks
from qtasks.registries import AsyncTask

app = QueueTasks()
app.config.result_time_interval = 0.1


@app.task(description="adds two numbers")
async def add(a: int, b: int):
    return a + b


@app.task(echo=True)
async def pipeline(self: AsyncTask, n: int):
    task = await self.add_task(n, n, task_name="add", timeout=30)
    self.ctx.get_logger().info("added: %s", task.returning)
    return task.returning * 2


@app.task(echo=True, max_time=0.5)
async def too_slow(self: AsyncTask):
    await self.ctx.sleep(5)


@app.task(echo=True)
async def stop_here(self: AsyncTask):
    self.ctx.cancel("not today")


@app.task
def plain(n: int):  # a plain function in the async app
    return -n


async def doubled(value):
    await asyncio.sleep(0)
    return value * 2


@app.task(generate_handler=doubled)
async def stream(n: int):
    for i in range(n):
        yield i


if __name__ == "__main__":
    app.run_forever(num_workers=10)
