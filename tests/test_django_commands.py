"""The qtasks Django app: settings.QTASKS, manage.py qtasks worker / inspect."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import django_project_qtasks

pytest.importorskip("django")

PROJECT = Path(__file__).parent / "django_project"


def manage(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "proj.settings", "PYTHONPATH": str(PROJECT)}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_inspect_lists_apps_modules_and_tasks():
    result = manage("qtasks", "inspect")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[default] proj:" in out and "[reports] proj_reports:" in out
    assert "[scratch] scratch: memory" in out
    assert "modules imported: shop.tasks, billing.tasks" in out
    assert "task add (shop.tasks.add, priority 0)" in out
    assert "task monthly (billing.reports.monthly" in out


def test_manage_py_worker_runs_tasks_and_stops_on_sigterm():
    app = django_project_qtasks().app
    app.flush_all()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "proj.settings", "PYTHONPATH": str(PROJECT)}
    log = Path(os.environ["QTASKS_TEST_DIR"]) / "manage-worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "manage.py", "qtasks", "worker", "--noreload",
                                 "--concurrency", "2"], cwd=PROJECT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            assert app.add_task("add", 20, 22, timeout=30).returning == 42
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert proc.returncode == 0, log.read_text()
    assert "database connections are cleaned up" in log.read_text()


def test_an_empty_queue_list_is_refused_clearly():
    # named queues at work: tests/test_django_tasks_backend.py (manage.py worker --queues emails)
    result = manage("qtasks", "worker", "--noreload", "--queues", ",")
    assert result.returncode != 0 and "give at least one queue name" in result.stderr


BAD = """
import django
from django.conf import settings
settings.configure(INSTALLED_APPS=["qtasks.contrib.django"], QTASKS={QTASKS})
try:
    django.setup()
except Exception as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.parametrize(("qtasks", "message"), [
    ({"default": {"BROKER_URL": "memory://x", "COLOUR": "red"}}, "unknown keys ['COLOUR']"),
    ({"default": {"NAME": "x"}}, "needs a BROKER_URL"),
    ({"default": "proj.nowhere:app"}, "No module named 'proj.nowhere'"),
    ({"default": 42}, "must be 'module:app' or a dict"),
    ({"default": {"APP": "proj.qtasks:app", "BROKER_URL": "memory://"}}, "with APP, only"),
])
def test_bad_settings_are_improperly_configured(qtasks, message):
    code = BAD.replace("{QTASKS}", repr(qtasks))
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("ImproperlyConfigured"), result.stdout + result.stderr
    assert message in result.stdout


def test_processes_option_supervises_manage_py_workers():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "proj.settings", "PYTHONPATH": str(PROJECT)}
    proc = subprocess.Popen([sys.executable, "manage.py", "qtasks", "worker", "--noreload",
                             "--processes", "2"], cwd=PROJECT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(3)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=40)
    text = out.decode()
    assert text.count(" ready: app 'proj'") == 2, text
    assert proc.returncode == 0
