"""Dramatiq: Redis broker, Results middleware with the Redis result backend (every actor
stores its result, so the drain writes one result per task as the other peers do)."""

import bench_common as c
import dramatiq
from dramatiq import group
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

broker = RedisBroker(url=c.URL)
broker.add_middleware(Results(backend=RedisBackend(url=c.URL), store_results=True))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bump")
def bump() -> None:
    c.bump_sync()


@dramatiq.actor(actor_name="noop")
def noop() -> None:
    return None


@dramatiq.actor(actor_name="side")
def side(key: str) -> None:
    c.side_sync(key)


@dramatiq.actor(actor_name="nap")
def nap() -> None:
    c.nap_sync()


class DramatiqPeer(c.Peer):
    packages = ["dramatiq", "redis", "hiredis"]

    def single(self):
        bump.send()

    def bulk(self, k):
        group(bump.message() for _ in range(k)).run()

    def nap(self):
        nap.send()

    def side(self, key):
        side.send(key)

    def result(self):
        noop.send().get_result(block=True, timeout=int(c.WAIT_TIMEOUT * 1000))

    def worker(self):
        # One worker process (the CLI's default is one per CPU); default threads (8).
        argv = [c.bin_path("dramatiq"), "bench_dramatiq", "--processes", "1"]
        if c.CONCURRENCY:
            argv += ["--threads", str(c.CONCURRENCY)]
        c.exec_worker(argv)


PEER = DramatiqPeer()
