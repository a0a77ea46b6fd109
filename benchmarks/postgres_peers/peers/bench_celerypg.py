"""Celery on PostgreSQL alone: kombu's SQLAlchemy transport as the broker
(``sqla+postgresql+psycopg://``, tables ``kombu_queue`` and ``kombu_message``) and Celery's
database result backend (``db+postgresql+psycopg://``, table ``celery_taskmeta``), both through
SQLAlchemy on psycopg 3 (SQLAlchemy's plain ``postgresql://`` means psycopg2). BENCH_VARIANT
picks the pool: ``solo`` (the default here, one task at a time) or ``threads`` (default
concurrency: the CPU count; BENCH_CONCURRENCY overrides it).

pins: celery==5.7.0 packaging==26.4 SQLAlchemy==2.1.9 psycopg[binary]==3.3.9 redis==8.1.0
hiredis==3.5.0

- install: opens the broker (kombu creates its two tables and the ``celery`` queue row) and the
  result backend (``database_create_tables_at_setup``, the default, creates its two tables).
- worker: ``celery worker --pool solo|threads --loglevel WARNING``. The SQLAlchemy transport is
  a kombu "virtual" transport with no server push: the worker fetches one message per
  ``SELECT ... FOR UPDATE`` (no SKIP LOCKED) and, when the queue is empty, sleeps the
  transport's ``polling_interval``, default 1 s. It cannot be set: kombu hands every transport
  option to ``create_engine``, which rejects ``polling_interval`` (TypeError). The same 1 s
  sleep follows every poll made while the prefetch window is full (concurrency x 4 messages
  taken, not yet acked), so the threads pool drains slower than solo. A fetched message is
  marked ``visible = false``, never deleted, and the fetch walks the (timestamp, id) index
  past every consumed row: each fetch costs more as the table grows.
- bulk: ``group(...).apply_async()``, which publishes one message (one INSERT and COMMIT, after
  a SELECT of the queue row) per task, as every kombu transport does.
- result: ``AsyncResult.get(timeout=5)``, which for the database backend polls
  ``celery_taskmeta`` every 0.5 s (its default ``interval``; kept).
- Outside a forked pool child (so in the solo and threads pools, and in the producer) Celery's
  database backend builds its SQLAlchemy engine with ``NullPool``: every result stored by the
  worker and every poll of ``get()`` opens and closes its own PostgreSQL connection. The broker
  keeps one connection per process.
"""

import bench_common as c
from celery import Celery, group
from kombu import Queue

POOL = c.VARIANT or "solo"


def _sqlalchemy_url(url: str) -> str:
    """``postgresql://...`` -> ``postgresql+psycopg://...`` (psycopg 3 under SQLAlchemy)."""
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+psycopg"
    return scheme + sep + rest


DB_URL = _sqlalchemy_url(c.PG_URL or "postgresql://postgres@127.0.0.1:5432/postgres")

app = Celery("bench_celerypg", broker="sqla+" + DB_URL, backend="db+" + DB_URL)
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


class CeleryPgPeer(c.Peer):
    packages = ["celery", "kombu", "SQLAlchemy", "psycopg", "psycopg-binary", "redis",
                "hiredis"]

    def install(self):
        app.backend  # noqa: B018 - the database backend creates its tables when made
        with app.connection_for_write() as conn:
            Queue(app.conf.task_default_queue, channel=conn.default_channel).declare()

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
        argv = [c.bin_path("celery"), "-A", "bench_celerypg", "worker", "--pool", POOL,
                "--loglevel", "WARNING"]
        if c.CONCURRENCY:
            argv += ["--concurrency", str(c.CONCURRENCY)]
        c.exec_worker(argv)


PEER = CeleryPgPeer()
