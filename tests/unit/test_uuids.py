"""New tasks' uuids come from a pool of random bytes (``qtasks.core.uuids``): they must be
version 4 uuids like ``uuid.uuid4()``'s, distinct across threads drawing at once and across the
pool's refills, and a forked child must not repeat its parent's."""

from __future__ import annotations

import os
import threading
from uuid import UUID

from qtasks import QueueTasks
from qtasks.core.uuids import uuid4


def test_uuids_are_random_version_4_and_distinct_across_threads_and_refills():
    drawn: list[list[UUID]] = [[] for _ in range(8)]

    def draw(into: list[UUID]) -> None:
        for _ in range(5000):  # about 20 pools each, so threads meet at the refills
            into.append(uuid4())

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [u for into in drawn for u in into]
    assert len(set(every)) == len(every) == 40_000
    assert {u.version for u in every} == {4}
    assert {u.variant for u in every} == {"specified in RFC 4122"}
    assert all(UUID(str(u)) == u for u in every[:100])


def test_a_forked_child_does_not_repeat_its_parents_uuids():
    uuid4()  # the pool is in use before the fork: the child would otherwise go on from here
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's result goes through the pipe
        try:
            os.write(write, ",".join(str(uuid4()) for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        theirs = set(pipe.read().split(","))
    os.waitpid(child, 0)
    ours = {str(uuid4()) for _ in range(100)}
    assert len(theirs) == 100
    assert not theirs & ours


def test_tasks_get_version_4_uuids():
    app = QueueTasks(name="uuids", broker_url="memory://")

    @app.task(name="noop")
    def noop() -> None:
        return None

    tasks = [app.add_task("noop") for _ in range(300)]
    assert len({t.uuid for t in tasks}) == 300
    assert all(isinstance(t.uuid, UUID) and t.uuid.version == 4 for t in tasks)
