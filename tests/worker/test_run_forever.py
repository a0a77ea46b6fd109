"""``app.run_forever()`` starts the same worker as the CLI."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from apps import sync_app
from helpers import wait_until

TESTS = Path(__file__).parent.parent
SCRIPT = "from apps.sync_app import app\napp.run_forever()\n"


@pytest.mark.requires_processes("run_forever blocks its process and stops on its SIGTERM")
def test_run_forever_processes_tasks_and_stops_on_sigterm():
    app = sync_app.app
    app.flush_all()
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=TESTS, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(app.ping, what="the worker to report alive")
        assert app.add_task("add", 40, 2, timeout=10).returning == 42
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out.decode()
    assert not app.ping()  # a worker that stops cleanly unregisters
