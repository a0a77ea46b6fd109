"""The CLI and shared tasks through real workers."""

import pytest

from apps import shared_after, shared_mod, sync_app
from helpers import run_cli as qtasks
from helpers import run_cli_without


def test_shared_tasks_imported_after_the_app_run_on_its_worker(start_worker):
    from qtasks.core import apps as _state

    app = shared_after.app
    _state.app_main = app  # shared handles enqueue to the most recently created app (QTasks rule)
    app.flush_all()
    start_worker("apps.shared_after:app")
    assert shared_mod.triple.add_task(3, timeout=10).returning == 9
    import asyncio

    assert asyncio.run(shared_mod.double.add_task(4, timeout=10)).returning == 8


def test_info_prints_the_backend_and_tasks():
    result = qtasks("-A", "apps.sync_app:app", "info")
    assert result.returncode == 0, result.stderr
    app = sync_app.app
    assert f"backend:      {app.backend.describe()}\n" in result.stdout
    if app.storage is not app.backend:  # a broker and a separate result store
        assert f"store:        {app.storage.describe()} (records)\n" in result.stdout
    assert "router_late" in result.stdout


def test_app_option_after_the_subcommand_and_long_form():
    assert qtasks("info", "--app", "apps.sync_app:app").returncode == 0
    assert qtasks("info", "-app", "apps.sync_app").returncode == 0


def test_bad_app_spec_is_a_clear_error():
    result = qtasks("-A", "apps.nope:app", "info")
    assert result.returncode == 2 and "cannot import module 'apps.nope'" in result.stderr
    result = qtasks("-A", "apps.sync_app:missing", "info")
    assert result.returncode == 2 and "no attribute 'missing'" in result.stderr


def test_dead_letters_command_lists_reasons(start_worker):
    from apps.sync_app import app

    app.flush_all()
    start_worker("apps.sync_app:app")
    app.add_task("no_such_task", timeout=10)
    result = qtasks("-A", "apps.sync_app:app", "dead-letters")
    assert result.returncode == 0
    assert "UnknownTaskError" in result.stdout and "no_such_task" in result.stdout


@pytest.mark.requires_processes("the event loop is chosen by the worker process")
@pytest.mark.parametrize("choice", ["asyncio", "uvloop", "auto"])
def test_loop_option_picks_the_event_loop(start_worker, choice):
    pytest.importorskip("uvloop")  # the test extra installs it
    app = sync_app.app
    app.flush_all()
    worker = start_worker("apps.sync_app:app", "--loop", choice)
    used = "asyncio" if choice == "asyncio" else "uvloop"  # auto: uvloop when installed
    assert f", {used} loop" in worker.output
    assert app.add_task("add", 1, 2, timeout=20).returning == 3


@pytest.mark.requires_processes("runs the CLI in a process without uvloop")
def test_asking_for_uvloop_without_it_is_a_clear_error():
    result = run_cli_without("uvloop", "-A", "apps.sync_app:app", "run", "--loop", "uvloop")
    assert result.returncode == 2
    assert "pip install 'qtasks[uvloop]'" in result.stderr
    assert "Traceback" not in result.stderr
