"""The CLI and shared tasks through real workers."""

from apps import shared_after, shared_mod, sync_app
from helpers import run_cli as qtasks


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
