"""Test set-up: one scratch directory per session, and real worker processes on demand."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
os.environ["QTASKS_TEST_DIR"] = tempfile.mkdtemp(prefix="qtasks-tests-")
sys.path.insert(0, str(TESTS))


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(os.environ["QTASKS_TEST_DIR"], ignore_errors=True)


class WorkerProcess:
    """``qtasks -A spec run ...`` in a subprocess, its output in a log file."""

    def __init__(self, spec: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.spec, self.args = spec, args
        self.log_path = Path(os.environ["QTASKS_TEST_DIR"]) / f"worker-{time.monotonic_ns()}.log"
        full_env = {**os.environ, "PYTHONPATH": str(TESTS), **(env or {})}
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qtasks", "-A", spec, "run", *args],
            cwd=TESTS, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, count: int = 1, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.output.count(" ready: app ") < count:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready in {timeout}s:\n{self.output}")
            time.sleep(0.05)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_worker():
    """``start_worker(spec, *args, env=...)`` starts a worker and waits until it is ready."""
    started: list[WorkerProcess] = []

    def start(spec: str, *args: str, env: dict[str, str] | None = None,
              ready: int = 1) -> WorkerProcess:
        worker = WorkerProcess(spec, *args, env=env)
        started.append(worker)
        worker.wait_ready(ready)
        return worker

    yield start
    for worker in started:
        worker.stop()
