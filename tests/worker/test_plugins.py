"""Plugins at their triggers, through real workers, in both flavours."""

import pytest

from apps import aplugin_app, plugin_app
from flavours import Client


@pytest.fixture(params=["sync", "async"])
def client(request, start_worker):
    c = Client(plugin_app if request.param == "sync" else aplugin_app)
    c.flush()
    c.worker = start_worker(c.spec)
    return c


def test_plugin_results_merge_key_by_key(client):
    record = client.add("prio", 1, b=2, timeout=10)
    assert record.priority == 7
    assert record.returning == [1, 2]  # the arguments survived a plugin that returned priority


def test_args_and_result_replacement(client):
    assert client.add("doubled", 5, timeout=10).returning == 10
    assert client.add("resulted", "hi", timeout=10).returning == "hi!"


def test_plugin_decides_the_result_of_a_plugin_error(client):
    flavour = "async" if client.is_async else "sync"
    record = client.add("decided", timeout=10)
    assert (record.status, record.returning) == ("success", f"decided by plugin: {flavour}")


def test_a_failing_plugin_is_logged_with_its_traceback_and_skipped(client):
    assert client.add("doubled", 1, timeout=10).status == "success"
    assert "RuntimeError: this plugin is broken" in client.worker.output
    assert "plugin Broken failed at trigger 'worker_execute_before'" in client.worker.output


EXPECTED = {
    # producer side
    "qtasks_add_task_before_broker", "broker_add_before", "storage_add", "broker_add_after",
    "qtasks_add_task_after_broker", "storage_get", "broker_get", "qtasks_get", "qtasks_ping",
    "qtasks_flush_all", "broker_flush_all", "storage_flush_all", "stats_inspect",
    # worker side
    "starter_start", "storage_start", "global_config_start", "broker_start", "worker_start",
    "broker_listen_start", "worker_add", "task_executor_middlewares_execute",
    "worker_execute_before", "task_executor_args_replace", "task_executor_before_execute",
    "worker_run_task_before", "task_executor_run_task", "task_executor_task_close",
    "task_executor_after_execute", "task_executor_after_execute_result_replace",
    "task_executor_decode", "worker_execute_after", "worker_remove_finished_task",
    "broker_remove_finished_task", "storage_remove_finished_task", "worker_stop",
    "broker_stop", "storage_stop", "global_config_stop", "starter_stop",
}


def test_every_implemented_trigger_fires(start_worker):
    from helpers import clear_marks, marks
    from qtasks.stats import SyncStats

    app = plugin_app.app
    app.flush_all()
    clear_marks()
    worker = start_worker("apps.plugin_app:app")
    record = app.add_task("doubled", 2, timeout=10)
    app.get(record.uuid)
    app.ping()
    SyncStats(app).inspect()
    app.flush_all()
    worker.stop()
    seen = {line.split()[1] for line in marks() if line.startswith("trigger ")}
    assert EXPECTED - seen == set()
