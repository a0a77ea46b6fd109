"""Timers enqueue ordinary tasks on APScheduler triggers, inside a worker or beside it."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apscheduler.job import Job

from helpers import wait_until

TESTS = Path(__file__).parent.parent


def _done(app, value):
    rows = app.client.search(task_name="test", status="success", limit=10_000)
    assert all(r["args"] == "[5]" and r["returning"] == str(value) for r in rows)
    return len(rows)


def test_timer_inside_a_worker(start_worker):
    from apps import timer_app

    assert isinstance(timer_app.job, Job)
    timer_app.app.flush_all()
    start_worker("apps.timer_app:app", "--timers")
    wait_until(lambda: _done(timer_app.app, 10) >= 3, timeout=20, what="three timer firings")


def test_worker_without_timers_flag_runs_no_timer(start_worker):
    from apps import timer_app

    timer_app.app.flush_all()
    start_worker("apps.timer_app:app")
    time.sleep(1.5)
    assert timer_app.app.stats().records == 0


@pytest.mark.requires_processes("the timer runs standalone in a process of its own")
def test_async_timer_standalone_beside_a_worker(start_worker):
    from apps import async_timer_app

    asyncio.run(async_timer_app.app.flush_all())
    start_worker("apps.async_timer_app:app")
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    proc = subprocess.Popen([sys.executable, "-m", "apps.async_timer_app"], cwd=TESTS, env=env)
    try:
        wait_until(lambda: _done(async_timer_app.app, 6) >= 2, timeout=20,
                   what="two timer firings")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert proc.returncode == 0
