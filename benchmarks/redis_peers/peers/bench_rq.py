"""RQ: one queue; the stock forking ``rq worker`` (a work horse process per job)."""

import bench_common as c
from redis import Redis
from rq import Queue
from rq.results import Result

queue = Queue("bench", connection=Redis.from_url(c.URL))


def bump() -> None:
    c.bump_sync()


def noop() -> None:
    return None


def side(key: str) -> None:
    c.side_sync(key)


def nap() -> None:
    c.nap_sync()


class RQPeer(c.Peer):
    packages = ["rq", "redis", "hiredis"]

    def single(self):
        queue.enqueue(bump)

    def bulk(self, k):
        queue.enqueue_many([Queue.prepare_data(bump) for _ in range(k)])

    def nap(self):
        queue.enqueue(nap)

    def check_naps(self):
        raise c.NotAvailable("an RQ worker process runs one job at a time")

    def side(self, key):
        queue.enqueue(side, key)

    def result(self):
        job = queue.enqueue(noop)
        res = job.latest_result(timeout=int(c.WAIT_TIMEOUT))  # XREAD BLOCK on its results
        if res is None or res.type != Result.Type.SUCCESSFUL:
            raise RuntimeError(f"rq result: {res!r}")

    def worker(self):
        c.exec_worker([c.bin_path("rq"), "worker", "--url", c.URL, "--logging_level", "WARNING",
                       "bench"])


PEER = RQPeer()
