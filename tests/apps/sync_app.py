"""The sync app the worker tests run in real worker processes."""

import os
import time
from pathlib import Path

from qtasks import QueueTasks, SyncRouter

app = QueueTasks(name="tsync", broker_url=f"sqlite:///{os.environ['QTASKS_TEST_DIR']}/tsync.sqlite3")
MARKS = Path(os.environ["QTASKS_TEST_DIR"]) / "marks"


def mark(line: str) -> None:
    MARKS.mkdir(exist_ok=True)
    with open(MARKS / f"{os.getpid()}.log", "a") as fh:
        fh.write(line + "\n")


@app.task(name="test")
def test(id):
    return f"User {id} recorded"


@app.task
def add(a, b=0):
    return a + b


@app.task(name="error_task")
def error_task():
    return 1 / 0


@app.task
def sleepy(seconds, tag=""):
    start = time.time()
    mark(f"start {tag}")
    time.sleep(seconds)
    return [start, time.time()]


@app.task
def stamp():
    return time.time()


@app.task
def die():
    os._exit(3)


@app.task
def unencodable():
    return {1, 2}


router = SyncRouter()


@router.task
def router_task():
    return "router"


app.include_router(router)


@router.task()
def router_late():
    return "late"


@app.task
def exits():
    raise SystemExit(4)


@app.task
def surrogate():
    return "broken \ud800 text"
