"""Testing support for Django users: immediate mode from settings, capture mode, fixtures."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django")

PROJECT = Path(__file__).parent / "django_project"

SCRIPT = """
import django
from django.conf import settings
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.db import transaction
from proj.qtasks import app
from shop.models import Order
from shop.tasks import add
from qtasks.testing.capture import capture_tasks

MODE

class Rollback(Exception):
    pass

try:
    with transaction.atomic():  # like a Django TestCase: the test's data is never committed
        Order.objects.create(total=5)
        CHECKS
        raise Rollback
except Rollback:
    pass
print("ok")
"""


def run(mode: str, checks: str, immediate: bool) -> subprocess.CompletedProcess:
    code = SCRIPT.replace("MODE", mode).replace("CHECKS", checks.replace("\n", "\n        "))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "proj.settings", "PYTHONPATH": str(PROJECT)}
    if immediate:
        code = code.replace("django.setup()", "settings.QTASKS_IMMEDIATE = True\ndjango.setup()")
    return subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_immediate_mode_runs_inline_inside_the_tests_transaction():
    checks = ("record = app.add_task('count_orders')\n"
              "assert (record.status, record.returning) == ('success', 1), record\n"
              "assert add.add_task(2, 3).returning == 5\n"
              "try:\n    add.add_task({1}, 2)\nexcept TypeError:\n    pass\n"
              "else:\n    raise AssertionError('serialisation was skipped')")
    result = run("", checks, immediate=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_without_the_setting_nothing_runs_inline():
    result = run("", "from qtasks.testing.capture import is_immediate\n"
                     "assert not is_immediate(app)", immediate=False)
    assert result.returncode == 0, result.stderr


def test_capture_mode_asserts_and_runs_captured_tasks_in_the_transaction():
    checks = ("with capture_tasks(app) as captured:\n"
              "    app.add_task('count_orders')\n"
              "    # inside the test's transaction on-commit hooks wait for a commit that never\n"
              "    # comes; Django's captureOnCommitCallbacks runs them, as in a TestCase\n"
              "    from django.test import TestCase\n"
              "    with TestCase.captureOnCommitCallbacks(execute=True):\n"
              "        add.add_task_on_commit(4, 5)\n"
              "captured.assert_enqueued('count_orders')\n"
              "captured.assert_enqueued('add', args=(4, 5), count=1)\n"
              "try:\n    captured.assert_enqueued('add', args=(9, 9))\nexcept AssertionError:\n"
              "    pass\nelse:\n    raise AssertionError('should not match')\n"
              "records = captured.run()\n"
              "assert [r.returning for r in records] == [1, 9], records\n"
              "captured.assert_nothing_enqueued()\n"
              "assert app.stats().queued == 0")
    result = run("app.flush_all()", checks, immediate=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_qtasks_capture_fixture(qtasks_capture):
    from qtasks import QueueTasks

    app = QueueTasks(name="capture-fixture", broker_url="memory://capture-fixture")

    @app.task
    def double_it(x):
        return x * 2

    captured = qtasks_capture(app)
    double_it.add_task(21)
    captured.assert_enqueued("double_it", args=(21,))
    assert captured.run()[0].returning == 42
