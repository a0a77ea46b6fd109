"""Small helpers shared by the tests."""

import io
import logging
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from backend_urls import in_process_only

TESTS = Path(__file__).parent


def marks() -> list[str]:
    """Lines the test apps' tasks wrote with ``mark()``, across all worker processes."""
    folder = Path(os.environ["QTASKS_TEST_DIR"]) / "marks"
    if not folder.exists():
        return []
    return [line for f in folder.iterdir() for line in f.read_text().splitlines()]


def clear_marks() -> None:
    folder = Path(os.environ["QTASKS_TEST_DIR"]) / "marks"
    if folder.exists():
        for f in folder.iterdir():
            f.unlink()


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def run_script(script: str, timeout: float = 60) -> None:
    """Run ``script`` in a fresh Python process; it must print "ok" and exit 0."""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok", result.stdout


def run_cli_without(module: str, *args: str) -> subprocess.CompletedProcess:
    """``qtasks *args`` in a subprocess in which ``module`` cannot be imported (an optional
    dependency that is not installed)."""
    code = (f"import sys; sys.modules[{module!r}] = None; from qtasks.cli import main; "
            f"raise SystemExit(main({list(args)!r}))")
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.run([sys.executable, "-c", code], cwd=TESTS, env=env,
                          capture_output=True, text=True, timeout=60)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``qtasks *args`` in a subprocess; when the test backend lives in one process
    (``memory://``), ``qtasks.cli.main`` in this process instead, so the command sees the test's
    queue and records. Either way: a ``CompletedProcess`` with the exit status and the text."""
    if not in_process_only():
        env = {**os.environ, "PYTHONPATH": str(TESTS)}
        return subprocess.run([sys.executable, "-m", "qtasks", *args], cwd=TESTS, env=env,
                              capture_output=True, text=True, timeout=timeout)
    from qtasks.cli import main

    if "run" in args:
        raise ValueError("run_cli cannot run a worker in this process: use start_worker")
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    saved = list(sys.path), list(root.handlers), root.level  # main() configures logging
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors, as the process would exit
                code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    finally:
        sys.path[:], root.handlers[:] = saved[0], saved[1]
        root.setLevel(saved[2])
    return subprocess.CompletedProcess(["qtasks", *args], code, out.getvalue(), err.getvalue())


DJANGO_PROJECT = Path(__file__).parent / "django_project"


def django_project_qtasks():
    """The test Django project's ``proj.qtasks`` module, imported with the project on the path."""
    import importlib
    import sys

    sys.path.insert(0, str(DJANGO_PROJECT))
    try:
        return importlib.import_module("proj.qtasks")
    finally:
        sys.path.remove(str(DJANGO_PROJECT))


def statuses(app, uuids: list[str]) -> dict[str, int]:
    """How many of these tasks' records are in each status (``missing``: no record)."""
    counts: dict[str, int] = {}
    for uuid in uuids:
        record = app.get(uuid)
        status = record.status if record is not None else "missing"
        counts[status] = counts.get(status, 0) + 1
    return counts
