"""What a PostgreSQL user must be able to count on when things break: a worker killed mid-batch,
PostgreSQL restarted, a worker's connections terminated, a database that cannot be reached, a
worker asked to stop."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from helpers import statuses, wait_until
from postgresbackend.conftest import POSTGRES
from qtasks import QueueTasks
from qtasks.exceptions import BackendConnectionError

pytestmark = pytest.mark.slow


def test_a_killed_worker_s_tasks_are_run_by_the_next_one(pg_url, apps, side):
    spec, app, runs = apps.app(pg_url, lease=2.0)
    records = app.add_tasks([("mark", (i,), {"sleep": 0.01}) for i in range(1000)])
    uuids = [str(r.uuid) for r in records]
    first = apps.worker(spec, "--concurrency", "20")
    wait_until(lambda: side.hlen(runs) >= 150, timeout=60, what="150 tasks run")
    first.signal(signal.SIGKILL)
    first.wait(10)
    in_flight = app.stats().running
    assert in_flight > 0, "the killed worker held no lease: the test proves nothing"

    apps.worker(spec, "--concurrency", "20")
    wait_until(lambda: statuses(app, uuids).get("success", 0) == 1000, timeout=120,
               what="all 1000 tasks to succeed")
    counts = {int(k): int(v) for k, v in side.hgetall(runs).items()}
    assert sorted(counts) == list(range(1000))  # every task ran
    duplicates = sum(1 for n in counts.values() if n > 1)
    print(f"\nkill -9 with {in_flight} leased: 1000 tasks final, {duplicates} ran twice "
          "(those the killed worker had started or finished without writing)")
    assert duplicates <= in_flight + 20
    stats = app.stats()
    assert (stats.queued, stats.running) == (0, 0)


def _cluster() -> str:
    return sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]


def _ready() -> bool:
    try:
        with psycopg.connect(POSTGRES, connect_timeout=1):
            return True
    except psycopg.OperationalError:
        return False


def test_a_postgresql_restart_loses_no_acknowledged_task(pg_url, apps, side):
    spec, app, _ = apps.app(pg_url, lease=5.0)
    worker = apps.worker(spec)
    acknowledged, refused = [], 0
    restart = None
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < 8.0 or (restart is not None and restart.poll() is None):
        if restart is None and time.monotonic() - started > 2.0:
            restart = subprocess.Popen(["pg_ctlcluster", "--skip-systemctl-redirect",
                                        _cluster(), "main", "restart", "-m", "fast"])
        try:
            acknowledged.append(str(app.add_task("mark", i).uuid))
        except BackendConnectionError:
            refused += 1
            time.sleep(0.01)
        i += 1
    assert restart is not None and restart.wait(60) == 0
    wait_until(_ready, timeout=60, what="PostgreSQL back up")
    assert refused > 0 and len(acknowledged) > 100

    def all_done() -> bool:
        return statuses(app, acknowledged).get("success", 0) == len(acknowledged)

    try:
        wait_until(all_done, timeout=90, what="every acknowledged task to succeed")
    except AssertionError:
        raise AssertionError(f"{statuses(app, acknowledged)}\n{worker.output[-3000:]}") from None
    print(f"\n{len(acknowledged)} enqueues acknowledged, {refused} refused during the restart; "
          "all acknowledged ones ran")
    assert worker.alive, worker.output  # it reconnected instead of exiting
    assert "cannot reach the backend" in worker.output


def test_terminated_connections_cost_no_task(pg_url, apps, side):
    spec, app, runs = apps.app(pg_url, lease=5.0)
    worker = apps.worker(spec, "--concurrency", "10")
    records = app.add_tasks([("mark", (i,), {"sleep": 0.005}) for i in range(600)])
    wait_until(lambda: side.hlen(runs) >= 100, timeout=60, what="100 tasks run")
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'qtasks' AND pid <> pg_backend_pid()").fetchone()[0]
    assert killed > 0
    uuids = [str(r.uuid) for r in records]
    wait_until(lambda: statuses(app, uuids).get("success", 0) == 600, timeout=90,
               what="all 600 tasks to succeed")
    assert worker.alive, worker.output
    assert sorted(int(k) for k in side.hkeys(runs)) == list(range(600))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_producer_facing_an_unreachable_database_gets_an_error_not_a_hang():
    app = QueueTasks(name="nobody", broker_url=f"postgresql://postgres@127.0.0.1:{_free_port()}/x")
    started = time.monotonic()
    with pytest.raises(BackendConnectionError, match="not reachable"):
        app.add_task("anything")
    assert time.monotonic() - started < 30  # a hang would be the bug, not a slow error


def test_sigterm_drains_running_tasks_and_leaves_the_rest_queued(pg_url, apps, side):
    spec, app, runs = apps.app(pg_url)
    records = app.add_tasks([("mark", (i,), {"sleep": 0.5}) for i in range(30)])
    worker = apps.worker(spec, "--concurrency", "4")
    wait_until(lambda: app.stats().running > 0, what="tasks to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    uuids = [str(r.uuid) for r in records]
    done = statuses(app, uuids)
    assert done.get("success", 0) >= 1
    assert set(done) <= {"success", "new"}  # nothing cut off halfway, nothing lost
    assert app.stats().queued == done.get("new", 0)
    assert all(int(v) == 1 for v in side.hgetall(runs).values())
    apps.worker(spec, "--concurrency", "10")
    wait_until(lambda: statuses(app, uuids) == {"success": 30}, timeout=60,
               what="the rest to run")
