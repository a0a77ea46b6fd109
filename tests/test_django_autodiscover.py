"""autodiscover_tasks against a real Django project (tests/django_project), in subprocesses
so that each one sets Django up on its own."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import django_project_qtasks

pytest.importorskip("django")

PROJECT = Path(__file__).parent / "django_project"


def run_python(code: str, settings: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    if settings:
        env["DJANGO_SETTINGS_MODULE"] = "proj.settings"
    else:
        env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=60)


SETUP = "import django, json\ndjango.setup()\nfrom proj.qtasks import app, reports\n"


def test_each_app_gets_the_tasks_of_its_own_modules():
    result = run_python(SETUP + "print(json.dumps({'app': sorted(app._own_tasks), "
                        "'reports': sorted(reports._own_tasks), 'found': app._discovered, "
                        "'found_reports': reports._discovered}))")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    # shop.tasks, and billing.tasks (an app listed by its AppConfig, label "payments")
    assert {"add", "charge"} <= set(data["app"]) and "monthly" not in data["app"]
    assert data["reports"] == ["monthly"]
    assert data["found"] == ["shop.tasks", "billing.tasks"]
    assert data["found_reports"] == ["billing.reports"]


def test_returns_none_and_a_second_call_is_harmless():
    code = SETUP + ("from qtasks.contrib.django import autodiscover_tasks\n"
                    "before = dict(app._own_tasks)\n"
                    "assert autodiscover_tasks(app) is None\n"
                    "assert autodiscover_tasks(app, ['tasks']) is None\n"
                    "assert dict(app._own_tasks) == before\n"
                    "from qtasks.core import apps as _state\n"
                    "print('ok')")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_a_module_that_fails_to_import_is_an_error_naming_app_and_module():
    code = SETUP + ("from qtasks.contrib.django import autodiscover_tasks\n"
                    "autodiscover_tasks(app, ['oops'])\n")
    result = run_python(code)
    assert result.returncode != 0
    assert "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'" in result.stderr
    assert "importing module 'oops' of Django app 'broken' (broken.oops) failed" in result.stderr


def test_called_before_django_is_ready_it_says_so():
    code = ("import django\nfrom django.conf import settings\n"
            "from qtasks import QueueTasks\n"
            "from qtasks.contrib.django import autodiscover_tasks\n"
            "autodiscover_tasks(QueueTasks(name='early', broker_url='memory://early'))\n")
    result = run_python(code)
    assert result.returncode != 0
    assert "AppRegistryNotReady" in result.stderr and "django.setup()" in result.stderr


def test_wrong_arguments():
    code = SETUP + ("from qtasks.contrib.django import autodiscover_tasks\n"
                    "for bad in [(None,), (app, 'tasks')]:\n"
                    "    try:\n"
                    "        autodiscover_tasks(*bad)\n"
                    "    except TypeError as exc:\n"
                    "        print('TypeError')\n")
    result = run_python(code)
    assert result.stdout.split() == ["TypeError", "TypeError"], result.stderr


def test_import_qtasks_does_not_import_django():
    result = run_python("import sys, qtasks, qtasks.asyncio\nprint('django' in sys.modules)",
                        settings=False)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.requires_processes("the worker is the Django project's process "
                                "(DJANGO_SETTINGS_MODULE and its sys.path at start)")
def test_plain_qtasks_worker_runs_django_project_tasks(start_worker):
    project_qtasks = django_project_qtasks()
    app = project_qtasks.app
    app.flush_all()
    env = {"DJANGO_SETTINGS_MODULE": "proj.settings", "PYTHONPATH": str(PROJECT)}
    start_worker("proj.qtasks:app", env=env)
    assert app.add_task("add", 2, 3, timeout=10).returning == 5
    assert app.add_task("charge", 250, timeout=10).returning == "charged 250"


def test_model_instances_and_requests_are_refused_with_advice():
    code = SETUP + ("from django.test import RequestFactory\n"
                    "from shop.models import Order\n"
                    "for value in (Order(pk=5, total=3), RequestFactory().get('/')):\n"
                    "    try:\n"
                    "        app.add_task('add', value, 1)\n"
                    "    except TypeError as exc:\n"
                    "        print(exc)\n"
                    "print(app.stats().queued)\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    order_line, request_line, queued = result.stdout.strip().splitlines()
    assert "positional argument 0 (Order)" in order_line and "primary key (5)" in order_line
    assert "request cannot travel to a worker" in request_line
    assert queued == "0"
