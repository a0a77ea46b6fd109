"""Python task queues on PostgreSQL side by side: enqueue, drain, round trip, sleep, RSS.

Run from the repository root with any Python 3.11+ (the harness needs only the standard
library and ``psql``; every peer runs in its own virtualenv)::

    python3 benchmarks/postgres_peers.py                          # every peer
    python3 benchmarks/postgres_peers.py --quick                  # smoke test, small numbers
    python3 benchmarks/postgres_peers.py --peers qtasks-async,pgqueuer --json out.json
    python3 benchmarks/postgres_peers.py --pg postgresql://postgres@127.0.0.1:5432

This is ``redis_peers.py``'s harness (its docstring describes the scenarios, the venvs, the
worker processes and the table) with another set of peers. What differs:

- The queue is the PostgreSQL at ``--pg`` (default ``postgresql://postgres@127.0.0.1:5432``):
  before each group of scenarios, and before each peer, the database ``qtasks_bench`` is
  dropped and created again (``psql``), and the peer's ``install`` command creates its tables
  in it (``qtasks migrate``, procrastinate's schema, ``pgq install``, Django's migrations).
  Then a ``CHECKPOINT`` writes out what the previous group left in shared buffers, so that
  no peer's scenarios pay for the writes of the one measured before it.
  Server settings are the machine's (``fsync`` and ``synchronous_commit`` on).
- The tasks' side effects (the drain counter, the round-trip lists, the naps' timestamps) go to
  a private Redis, as in the Redis benchmark: the same cost for every peer, and a counter this
  harness can poll without touching the database under test.
- Peers: this repository's qtasks (sync and async apps), procrastinate, pgqueuer, Django's
  task framework with its database backend (``db_worker``), and Celery with the SQLAlchemy
  broker and database result backend. Their adapters are in
  ``benchmarks/postgres_peers/peers/``; qtasks uses the Redis benchmark's adapter, which turns
  to PostgreSQL when ``BENCH_PG_URL`` is set.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis_peers as rp

PG_ADAPTERS = Path(__file__).resolve().parent / "postgres_peers" / "peers"
DATABASE = "qtasks_bench"
PSYCOPG = "psycopg[binary]==3.3.9"
REDIS_CLIENT = (rp.REDIS_PY, rp.HIREDIS)  # the tasks' side effects
QTASKS_HERE = ("-e", f"{rp.REPO}[redis,postgres,uvloop]")
# SQLAlchemy needs postgresql+psycopg:// URLs (plain postgresql:// means psycopg2)
CELERY_PG = ("celery==5.7.0", "packaging==26.4", "SQLAlchemy==2.1.9", PSYCOPG, *REDIS_CLIENT)

PEERS = [
    rp.PeerSpec("qtasks-sync", "qtasks", "qtasks-pg", QTASKS_HERE, "sync", True,
                note="this repository, sync app; drain: qtasks run at the default concurrency "
                     "(10); bulk: add_tasks; result: add_task(timeout=5), woken by NOTIFY"),
    rp.PeerSpec("qtasks-async", "qtasks", "qtasks-pg", QTASKS_HERE, "async", True,
                note="this repository, asyncio app with coroutine tasks; otherwise as "
                     "qtasks-sync"),
    rp.PeerSpec("procrastinate", "procrastinate", "procrastinate",
                ("procrastinate==3.10.0", PSYCOPG, "psycopg-pool==3.3.3", *REDIS_CLIENT),
                note="drain: `procrastinate worker` at its default concurrency, 1 job at a time "
                     "(one fetch query per job); bulk: Task.batch_defer_async; result: n/a (it "
                     "keeps no results); finished jobs stay in its table"),
    # pgqueuer 1.6.0's `pgq run` fails at start with typer 0.29 (AttributeError in its CLI)
    rp.PeerSpec("pgqueuer", "pgqueuer", "pgqueuer",
                ("pgqueuer[asyncpg]==1.6.0", "asyncpg==0.32.0", "typer==0.28.0",
                 "uvloop==0.23.0", *REDIS_CLIENT),
                note="asyncpg; drain: `pgq run` at its default (no concurrency limit, batches "
                     "of 10 per fetch, uvloop); bulk: Queries.enqueue with lists; result: "
                     "CompletionWatcher (status only: it keeps no return values; completions "
                     "are written in batches, about every 0.1 s)"),
    rp.PeerSpec("django-tasks", "djangotasks", "djangotasks",
                ("Django==5.2.19", "django-tasks==0.12.0", "django-tasks-db[compat]==0.13.0",
                 PSYCOPG, *REDIS_CLIENT),
                note="django-tasks-db's `db_worker -v 0`: one task at a time, no thread option "
                     "(naps n/a), polls every 1 s when idle; Django's default CONN_MAX_AGE=0 "
                     "(a new connection per task); bulk: n/a; result: TaskResult.refresh() "
                     "polled every 10 ms"),
    rp.PeerSpec("celery-sqla-solo", "celerypg", "celerypg", CELERY_PG, "solo",
                note="kombu's SQLAlchemy transport (polls every 1 s; consumed messages stay in "
                     "its table) and the database result backend (NullPool: a connection per "
                     "result); --pool solo; bulk: group(...).apply_async(); result: "
                     "AsyncResult.get(), polling every 0.5 s"),
    rp.PeerSpec("celery-sqla-threads", "celerypg", "celerypg", CELERY_PG, "threads",
                note="as celery-sqla-solo with --pool threads at its default concurrency, the "
                     "CPU count (2 here)"),
]


class Postgres:
    """The server under test, reached with ``psql`` (the harness itself has no driver)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.url = f"{self.base}/{DATABASE}"

    def psql(self, *commands: str, database: str = "postgres") -> str:
        argv = ["psql", f"{self.base}/{database}", "-v", "ON_ERROR_STOP=1", "-qAt"]
        for command in commands:
            argv += ["-c", command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise rp.Failed(f"psql: {rp.short_reason(done.stderr)}")
        return done.stdout.strip()

    def recreate(self) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)", f"CREATE DATABASE {DATABASE}")

    def version(self) -> str:
        return self.psql("SHOW server_version")


def suite(server: Postgres) -> rp.Suite:
    def prepare(runner: rp.PeerRunner) -> None:
        runner.redis.flush()
        server.recreate()
        runner.produce("install")
        server.psql("CHECKPOINT")

    return rp.Suite(
        "postgres", PEERS, adapter_dirs=(rp.PEERS_DIR, PG_ADAPTERS),
        env=lambda: {"BENCH_PG_URL": server.url}, prepare=prepare,
        describe=lambda: f"PostgreSQL {server.version()} at {rp.short_reason(server.base)}; "
                         "side effects on Redis",
        logging_note="WARNING via CLI flag where the peer's worker has one (see each adapter).")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    base = "postgresql://postgres@127.0.0.1:5432"
    if "--pg" in argv:
        at = argv.index("--pg")
        base = argv[at + 1]
        del argv[at:at + 2]
    return rp.main(argv, suite(Postgres(base)), __doc__)


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        raise SystemExit(130) from None
