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
