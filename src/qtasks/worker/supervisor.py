"""``--processes N``: start N worker processes, restart one that dies, stop them all on a signal.

The children are ordinary ``python -m qtasks ... run`` processes; they share work through the
backend, never through this supervisor. A child that dies is restarted after a pause that grows
while it keeps dying young (1 s, doubling, at most 30 s), so a crash loop cannot spin the CPU.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

log = logging.getLogger("qtasks.supervisor")

YOUNG = 10.0  # a child that dies younger than this counts as crash-looping


class Supervisor:
    def __init__(self, app_spec: str, processes: int, child_args: list[str], grace: float,
                 first_only: list[str] | None = None, command: list[str] | None = None) -> None:
        # the children: ``qtasks -A spec run ...``, or a given command (manage.py qtasks worker)
        self.command = command or [sys.executable, "-m", "qtasks", "-A", app_spec, "run",
                                   *child_args]
        self.first_only = first_only or []  # options for process 0 alone (--timers)
        self.processes = processes
        self.grace = grace
        self.children: list[subprocess.Popen[bytes] | None] = [None] * processes
        self.started: list[float] = [0.0] * processes
        self.backoff: list[float] = [0.0] * processes
        self.restarts = 0
        self.stopping = 0
        self.env: dict[str, str] | None = None  # the children's environment (metrics)
        self.metrics_dir: str | None = None

    def serve_metrics(self, app: Any, port: int, host: str) -> None:
        """One metrics endpoint for all the children: they write their samples to a shared
        folder, which this process reads at each scrape."""
        from qtasks.metrics import CHILD, serve

        self.metrics_dir = tempfile.mkdtemp(prefix="qtasks-metrics-")
        self.env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir, CHILD: "1"}
        serve(app, port, host, multiprocess_dir=self.metrics_dir)

    def _spawn(self, slot: int) -> None:
        self.children[slot] = subprocess.Popen(self.command + (self.first_only if slot == 0
                                                               else []), env=self.env)
        self.started[slot] = time.monotonic()
        log.info("supervisor: started worker process %d (pid %d)", slot,
                 self.children[slot].pid)  # type: ignore[union-attr]

    def _signal(self, signum: int, _frame: object) -> None:
        self.stopping += 1
        for child in self.children:
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM if self.stopping == 1 else signal.SIGINT)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        for slot in range(self.processes):
            self._spawn(slot)
        due: dict[int, float] = {}
        while not self.stopping:
            for slot, child in enumerate(self.children):
                if slot in due or child is None or child.poll() is None:
                    continue
                lived = time.monotonic() - self.started[slot]
                self.backoff[slot] = (min(max(self.backoff[slot] * 2, 1.0), 30.0)
                                      if lived < YOUNG else 1.0)
                log.warning("supervisor: worker process %d (pid %d) exited with %s; restarting "
                            "in %.0fs", slot, child.pid, child.returncode, self.backoff[slot])
                if self.metrics_dir is not None:
                    from qtasks.metrics import process_dead

                    process_dead(child.pid)
                due[slot] = time.monotonic() + self.backoff[slot]
            for slot, when in list(due.items()):
                if time.monotonic() >= when and not self.stopping:
                    del due[slot]
                    self.restarts += 1
                    self._spawn(slot)
            time.sleep(0.2)
        deadline = time.monotonic() + self.grace + 5.0
        for child in self.children:
            if child is None:
                continue
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("supervisor: pid %d did not stop in time; killing it", child.pid)
                child.kill()
                child.wait()
        if self.metrics_dir is not None:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return 0
