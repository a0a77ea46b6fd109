"""Celery: Redis broker and Redis result backend. BENCH_VARIANT picks the pool (solo/threads)."""

import bench_common as c
from celery import Celery, group

POOL = c.VARIANT or "solo"

app = Celery("bench_celery", broker=c.URL, backend=c.URL)
app.conf.broker_connection_retry_on_startup = True  # silences a start-up deprecation warning


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


class CeleryPeer(c.Peer):
    packages = ["celery", "kombu", "redis", "hiredis"]

    def single(self):
        bump.delay()

    def bulk(self, k):
        group(bump.s() for _ in range(k)).apply_async()

    def nap(self):
        nap.delay()

    def check_naps(self):
        if POOL == "solo":
            raise c.NotAvailable("the solo pool runs one task at a time")

    def side(self, key):
        side.delay(key)

    def result(self):
        noop.delay().get(timeout=c.WAIT_TIMEOUT)

    def worker(self):
        argv = [c.bin_path("celery"), "-A", "bench_celery", "worker", "--pool", POOL,
                "--loglevel", "WARNING"]
        if c.CONCURRENCY:
            argv += ["--concurrency", str(c.CONCURRENCY)]
        c.exec_worker(argv)


PEER = CeleryPeer()
