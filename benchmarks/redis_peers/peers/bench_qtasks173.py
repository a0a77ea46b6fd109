"""Upstream QTasks 1.7.3 (PyPI ``qtasks``, another project with the same import name): the
sync app with its default Redis broker; the worker is ``app.run_forever()`` in this process,
which is what its ``python -m qtasks -A module:app`` CLI calls (that CLI has no log flag)."""

import bench_common as c

from qtasks import QueueTasks

app = QueueTasks(name="bench", broker_url=c.URL)
if c.CONCURRENCY:
    app.config.max_tasks_process = c.CONCURRENCY  # tasks run at once (default 10)


@app.task(name="bump")
def bump() -> None:
    c.bump_sync()


@app.task(name="noop")
def noop() -> None:
    return None


@app.task(name="side")
def side(key: str) -> None:
    c.side_sync(key)


@app.task(name="nap")
def nap() -> None:
    c.nap_sync()


class QTasks173Peer(c.Peer):
    packages = ["qtasks", "redis", "hiredis", "pydantic"]

    def single(self):
        app.add_task("bump")

    def bulk(self, k):
        raise c.NotAvailable("QTasks 1.7.3 has no bulk enqueue API")

    def nap(self):
        app.add_task("nap")

    def side(self, key):
        app.add_task("side", key)

    def result(self):
        task = app.add_task("noop", timeout=c.WAIT_TIMEOUT)  # polls every config.result_time_interval (1 s)
        if task is None or task.status != "success":
            raise RuntimeError(f"QTasks result: {task!r}")

    def worker(self):
        app.run_forever()  # default num_workers=4 dispatcher threads


PEER = QTasks173Peer()
