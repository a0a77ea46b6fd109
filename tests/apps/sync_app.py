"""The sync app the worker tests run in real worker processes."""

import os
import threading
import time

from apps.marks import MARKS, mark
from backend_urls import urls
from qtasks import QueueTasks, SyncRouter, TaskCancelError

app = QueueTasks(name="tsync", **urls("tsync"))


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


_overlap_lock = threading.Lock()
_overlap = [0]


@app.task
def peek_after(seconds, tag):
    """Sleeps, then returns the status of the task whose uuid the test left under ``tag``."""
    time.sleep(seconds)
    return app.get((MARKS.parent / f"peek-{tag}").read_text()).status


@app.task
def overlap():
    """How many ``overlap`` tasks were running in this worker process when this one ran."""
    with _overlap_lock:
        _overlap[0] += 1
        seen = _overlap[0]
    time.sleep(0)  # let another thread run
    with _overlap_lock:
        _overlap[0] -= 1
    return seen


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


# -- run options (issue 3) ------------------------------------------------------------------


@app.task(retry=2)
def flaky(tag):
    mark(f"flaky {tag}")
    raise KeyError(tag)


@app.task(retry=5, retry_on_exc=[LookupError])
def picky(kind, tag):
    mark(f"picky {tag}")
    raise (KeyError if kind == "key" else ZeroDivisionError)(tag)


@app.task(retry=2, retry_delay=0.3)
def backoff(tag):
    mark(f"backoff {tag} {time.time()}")
    raise ValueError(tag)


@app.task(retry=3)
def lucky(tag, succeed_on=2):
    from helpers import marks

    mark(f"lucky {tag}")
    if marks().count(f"lucky {tag}") < succeed_on:
        raise RuntimeError("not yet")
    return {"tag": tag}


@app.task(max_time=0.5)
def too_slow():
    time.sleep(3)
    return 1


@app.task(generate_handler=lambda v: v * 2)
def doubles(n):
    yield from range(1, n + 1)


async def plus_hundred(v):
    return v + 100


@app.task(generate_handler=plus_hundred)
def gen_async_handler(n):
    yield from range(n)


@app.task(decode=lambda r: f'{{"wrapped": {r}}}')
def decoded(x):
    return x


@app.task(decode=lambda r: "not json")
def bad_decode():
    return 1


@app.task
def cancel_me(reason):
    raise TaskCancelError(reason)


# -- echo and ctx ---------------------------------------------------------------------------


@app.task(echo=True)
def who(self):
    meta = self.ctx.get_metadata()
    return [str(self.ctx.task_uuid), self.task_name, type(self.ctx.get_config()).__name__,
            meta.status, type(self.ctx.get_component("config")).__name__,
            self.ctx.get_logger().name, type(self).__name__]


@app.task(echo=True)
def parent(self, x):
    child = self.add_task(x, task_name="add", timeout=30)
    return child.returning * 10


@app.task(echo=True)
def self_cancel(self, reason):
    self.ctx.cancel(reason)


@app.task(queue="emails")
def mail(to):
    return f"mail to {to}"


@app.task
def fails_once(path):
    """Fails the first time (it leaves ``path`` behind), succeeds on every later run."""
    if not os.path.exists(path):
        open(path, "w").close()
        raise RuntimeError("first run fails")
    return "second run"
