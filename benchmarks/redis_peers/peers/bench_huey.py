"""Huey: RedisHuey (blocking BRPOP dequeue, the default); store_none=True so that a task
returning None stores a result that ``result(blocking=True)`` can wait for."""

import bench_common as c
from huey import RedisHuey

huey = RedisHuey("bench", url=c.URL, store_none=True)


@huey.task(name="bump")
def bump() -> None:
    c.bump_sync()


@huey.task(name="noop")
def noop() -> None:
    return None


@huey.task(name="side")
def side(key: str) -> None:
    c.side_sync(key)


@huey.task(name="nap")
def nap() -> None:
    c.nap_sync()


class HueyPeer(c.Peer):
    packages = ["huey", "redis", "hiredis"]

    def single(self):
        bump()

    def bulk(self, k):
        raise c.NotAvailable("Huey has no bulk enqueue API")

    def nap(self):
        nap()

    def side(self, key):
        side(key)

    def result(self):
        noop().get(blocking=True, timeout=c.WAIT_TIMEOUT)

    def worker(self):
        # -q: WARNING level. Thread workers (the default kind); -w defaults to 1.
        argv = [c.bin_path("huey_consumer"), "bench_huey.huey", "-q", "-k", "thread"]
        if c.CONCURRENCY:
            argv += ["-w", str(c.CONCURRENCY)]
        c.exec_worker(argv)


PEER = HueyPeer()
