"""Small helpers shared by the tests."""

import os
from pathlib import Path


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
