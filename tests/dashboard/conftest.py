"""The dashboard as a real server process beside a real worker, and a headless Chromium.

Chromium comes from Debian (``apt-get install chromium``), driven by Playwright with
``executable_path``; nothing is downloaded. Screenshots go to ``$QTASKS_ARTEFACTS`` (default:
the test run's folder), so a failing run leaves them behind.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import TESTS

CHROMIUM = os.environ.get("QTASKS_CHROMIUM", "/usr/bin/chromium")
USER, PASSWORD = "admin", "pa55-w0rd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DashboardProcess:
    """``qtasks -A spec dashboard`` on a free loopback port."""

    def __init__(self, spec: str, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(os.environ["QTASKS_TEST_DIR"]) / f"dashboard-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qtasks", "-A", spec, "dashboard", "--port", str(self.port),
             "--interval", "0.3", *args],
            cwd=TESTS, env={**os.environ, "PYTHONPATH": str(TESTS)},
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"the dashboard did not start:\n{self.output}") \
                        from None
                time.sleep(0.1)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def dashboard():
    started: list[DashboardProcess] = []

    def start(spec: str = "apps.sync_app:app", *args: str) -> DashboardProcess:
        board = DashboardProcess(spec, *args)
        started.append(board)
        return board

    yield start
    for board in started:
        board.stop()


@pytest.fixture(scope="module")
def chromium():
    # module-scoped: Playwright's sync API runs an event loop on this thread while it is open,
    # and tests elsewhere call asyncio.run()
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, request):
    context = chromium.new_context(http_credentials={"username": USER, "password": PASSWORD},
                                   viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    yield page
    folder = Path(os.environ.get("QTASKS_ARTEFACTS") or
                  Path(os.environ["QTASKS_TEST_DIR"]) / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=str(folder / f"{request.node.name}.png"), full_page=True)
    finally:
        context.close()


def docs_screenshot(page, name: str) -> None:
    """With ``QTASKS_DOCS_SCREENSHOTS=1``, also write the page into docs/images/."""
    if os.environ.get("QTASKS_DOCS_SCREENSHOTS") == "1":
        folder = TESTS.parent / "docs" / "images"
        folder.mkdir(exist_ok=True)
        page.screenshot(path=str(folder / name), full_page=True)
