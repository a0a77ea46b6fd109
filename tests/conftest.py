"""Test set-up: one scratch directory per session, and real workers on demand.

``start_worker(spec, *args, env=...)`` runs ``qtasks -A spec run *args`` and waits until it is
ready. On a backend that lives in one process (``memory://``, see ``backend_urls``) a worker in
another process could not see the test's queue, so the same ``Worker`` the CLI builds runs on a
thread of the test process instead (:class:`WorkerThread`); both kinds offer the same surface.
Tests that need real processes (killing a worker, ``--processes``, a second program talking to
the worker's backend) carry ``@pytest.mark.requires_processes("why")`` and are skipped there.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from contextlib import ExitStack
from dataclasses import fields
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
os.environ["QTASKS_TEST_DIR"] = tempfile.mkdtemp(prefix="qtasks-tests-")
sys.path.insert(0, str(TESTS))

from backend_urls import in_process_only, urls  # noqa: E402  (needs QTASKS_TEST_DIR)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # the CLI's (qtasks.cli.main)


def pytest_configure(config):
    # A PostgreSQL backend under test needs its tables (qtasks migrate) before any app starts.
    for variable in ("QTASKS_TEST_BROKER_URL", "QTASKS_TEST_STORAGE_URL"):
        url = os.environ.get(variable, "")
        if url.startswith(("postgresql://", "postgres://")):
            from qtasks.backends.postgres import migrate

            migrate(url)
    config.addinivalue_line(
        "markers", "requires_processes(why): needs separate OS processes (skipped when the "
                   "test backend lives in one process, e.g. memory://)")


def pytest_collection_modifyitems(config, items):
    if not in_process_only():
        return
    broker = urls("{name}")["broker_url"]
    for item in items:
        marker = item.get_closest_marker("requires_processes")
        if marker is not None:
            why = marker.args[0] if marker.args else "separate processes"
            item.add_marker(pytest.mark.skip(
                reason=f"requires_processes: {why}; the test backend {broker} lives in one "
                       "process"))


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A three-master Redis Cluster on free loopback ports, for the whole session."""
    from redis_servers import Cluster

    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory):
    """A master, a replica and three Sentinels, for the whole session."""
    from redis_servers import Sentinels

    sentinels = Sentinels(tmp_path_factory.mktemp("sentinel"))
    yield sentinels
    sentinels.stop()


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

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def worker_id(self) -> str:
        """The id its ready line announced (what records and the dashboard show)."""
        found = re.search(r"worker (\S+) ready: app ", self.output)
        assert found is not None, f"no ready line yet:\n{self.output}"
        return found.group(1)

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

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

    def wait(self, timeout: float) -> int:
        """Wait for the worker to exit; its exit status."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker still running after {timeout}s:\n{self.output}") from None

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

    def check(self) -> None:
        """Teardown: nothing to check beyond what the test asserted (the process is gone)."""


# The WorkerThread whose code is running: set in the worker's thread, inherited by its event
# loop's tasks and by the threads that run plain-function tasks (the executor copies the
# context), so each worker's log holds its own lines only, as a worker process's log would.
_running_worker: contextvars.ContextVar[WorkerThread | None] = contextvars.ContextVar(
    "qtasks_test_worker", default=None)


class _WorkerLog(logging.Handler):
    def __init__(self, owner: WorkerThread, level: int) -> None:
        super().__init__(level)
        self.owner = owner
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        if _running_worker.get() is self.owner:
            self.lines.append(self.format(record))


class WorkerThread:
    """The worker ``qtasks -A spec run *args`` would start, on a thread of this process.

    The options are parsed by the CLI's own parser and the ``Worker`` is built as
    ``run_worker`` builds it (without signal handlers: ``signal(SIGTERM or SIGINT)`` calls
    ``request_stop()``, as the handlers do). ``env`` is applied to the app's config (the
    ``QTASKS_<FIELD>`` variables; a subprocess reads them when it builds the app) and to
    ``os.environ`` until the test ends. The exit status mirrors ``run_worker``'s: 1 if a hard stop
    abandoned running plain-function tasks (their threads keep running here) or the worker
    raised, else 0.
    """

    def __init__(self, spec: str, *args: str, env: dict[str, str] | None, stack: ExitStack,
                 monkeypatch: pytest.MonkeyPatch) -> None:
        from qtasks.cli import _parser, load_app
        from qtasks.worker import Worker

        self.spec, self.args = spec, args
        options = _parser().parse_args(["-A", spec, "run", *args])
        if options.processes > 1:
            pytest.fail(f"start_worker({spec!r}, '--processes', ...) needs worker processes: mark "
                        "the test @pytest.mark.requires_processes(...)", pytrace=False)
        saved_path = list(sys.path)
        try:
            self.app = load_app(spec)  # the module the test imported: the same memory state
        finally:
            sys.path[:] = saved_path
        _apply_env(self.app.config, env or {}, monkeypatch)
        level = logging.getLevelName(getattr(options, "loglevel", "INFO").upper())
        self._log = _WorkerLog(self, level)
        root = logging.getLogger()
        root.addHandler(self._log)
        stack.callback(root.removeHandler, self._log)
        if root.getEffectiveLevel() > level:  # the CLI's basicConfig sets the root level
            stack.callback(root.setLevel, root.level)
            root.setLevel(level)
        self.worker = Worker(self.app, concurrency=options.concurrency, grace=options.grace,
                             install_signals=False, timers=options.timers,
                             queues=options.queues)
        self.error: BaseException | None = None
        self._previous = self.app._worker
        self.app._worker = self.worker  # as run_worker does: app.stop() stops this worker
        self._thread = threading.Thread(target=self._main, daemon=True,
                                        name=f"test-worker-{self.app.name}")
        self._thread.start()

    def _main(self) -> None:
        _running_worker.set(self)
        try:
            asyncio.run(self.worker.run())
        except BaseException as exc:  # the worker crashed: kept for check() and the output
            self.error = exc
            self._log.lines.append("worker thread raised:\n" + "".join(
                traceback.format_exception(exc)))
        finally:
            if self.app._worker is self.worker:
                self.app._worker = self._previous

    @property
    def output(self) -> str:
        return "\n".join(self._log.lines)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def returncode(self) -> int | None:
        if self._thread.is_alive():
            return None
        return 1 if self.error is not None or self.worker.abandoned else 0

    def wait_ready(self, count: int = 1, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.output.count(" ready: app ") < count:
            if not self._thread.is_alive():
                raise AssertionError(f"worker exited with {self.returncode}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready in {timeout}s:\n{self.output}")
            time.sleep(0.05)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if sig not in (signal.SIGTERM, signal.SIGINT):
            pytest.fail(f"signal {sig!r} cannot be sent to a worker thread: mark the test "
                        "@pytest.mark.requires_processes(...)", pytrace=False)
        self.worker.request_stop()

    def wait(self, timeout: float) -> int:
        """Wait for the worker to stop; its exit status."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"worker still running after {timeout}s:\n{self.output}")
        return self.returncode  # type: ignore[return-value]

    def stop(self, timeout: float = 30.0) -> int:
        if self._thread.is_alive():
            self.worker.request_stop()
            self._thread.join(timeout)
        if self._thread.is_alive():  # a second request stops hard, like a second SIGTERM
            self.worker.request_stop()
            self._thread.join(10)
        if self._thread.is_alive():
            raise AssertionError(f"worker thread did not stop:\n{self.output}")
        return self.returncode  # type: ignore[return-value]

    def check(self) -> None:
        """Teardown: a worker that raised fails the test (a process would have died)."""
        if self.error is not None:
            pytest.fail(f"the worker thread for {self.spec} raised:\n{self.output}")


def _apply_env(config, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``env`` for an in-process worker: its ``QTASKS_<FIELD>`` variables, applied to ``config``
    as a new process would read them, and set in ``os.environ``; undone by monkeypatch. Any
    other variable is read when a process starts (PYTHONPATH, DJANGO_SETTINGS_MODULE) or a
    backend is built (QTASKS_SQLITE_*), so it is refused rather than silently ignored."""
    prefix = config.environ_prefix.upper()
    known = {prefix + f.name.upper(): f.name for f in fields(config)}
    for key, value in env.items():
        if key.upper() not in known:
            pytest.fail(f"{key} cannot be applied to a worker in this process (only config "
                        f"fields, {prefix}<FIELD>, can): mark the test "
                        "@pytest.mark.requires_processes(...)", pytrace=False)
        monkeypatch.setenv(key, value)
    parsed = copy.copy(config)  # parse with the config's own rules, then assign field by field
    parsed.apply_environment(env)
    for key in env:
        monkeypatch.setattr(config, known[key.upper()], getattr(parsed, known[key.upper()]))


@pytest.fixture
def start_worker(monkeypatch):
    """``start_worker(spec, *args, env=...)`` starts a worker and waits until it is ready."""
    started: list[WorkerProcess | WorkerThread] = []
    with ExitStack() as stack:

        def start(spec: str, *args: str, env: dict[str, str] | None = None,
                  ready: int = 1) -> WorkerProcess | WorkerThread:
            if in_process_only():
                worker = WorkerThread(spec, *args, env=env, stack=stack, monkeypatch=monkeypatch)
            else:
                worker = WorkerProcess(spec, *args, env=env)
            started.append(worker)
            worker.wait_ready(ready)
            return worker

        yield start
        stuck = []
        for worker in reversed(started):
            try:
                worker.stop()
            except AssertionError as exc:  # stop the others, then report it
                stuck.append(str(exc))
    if stuck:
        pytest.fail("\n\n".join(stuck))
    for worker in started:
        worker.check()
