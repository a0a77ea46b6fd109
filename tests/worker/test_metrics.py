"""``qtasks run --metrics-port``: Prometheus metrics scraped from real worker processes."""

import socket
import urllib.request

import pytest

from apps import sync_app
from helpers import run_cli_without, wait_until

pytestmark = pytest.mark.requires_processes("scrapes a worker process over HTTP")
prometheus = pytest.importorskip("prometheus_client.parser")  # the test extra installs it
APP = "apps.sync_app:app"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels without pid): value}``, summed over processes."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in prometheus.text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "pid")))
            samples[key] = samples.get(key, 0.0) + s.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_worker_serves_its_counts_and_the_queue(start_worker):
    app = sync_app.app
    app.flush_all()
    port = _free_port()
    start_worker(APP, "--metrics-port", str(port))
    for i in range(3):
        assert app.add_task("add", i, 1, timeout=20).status == "success"
    assert app.add_task("error_task", timeout=20).status == "error"
    assert app.add_task("flaky", "m1", timeout=20).status == "error"  # retried twice first
    app.add_task("mail", "ada@example.com")  # the emails queue: no worker takes it
    wait_until(lambda: value(scrape(port), "qtasks_tasks_total", task="flaky",
                             queue="default", result="error") == 1, what="the last outcome")
    got = scrape(port)
    assert value(got, "qtasks_tasks_total", task="add", queue="default", result="success") == 3
    assert value(got, "qtasks_tasks_total", task="error_task", queue="default",
                 result="error") == 1
    assert value(got, "qtasks_tasks_total", task="flaky", queue="default", result="retry") == 2
    assert value(got, "qtasks_task_run_seconds_count", task="add", queue="default") == 3
    assert value(got, "qtasks_task_wait_seconds_count", task="add", queue="default") == 3
    assert value(got, "qtasks_queue_waiting", queue="emails") == 1
    assert value(got, "qtasks_queue_waiting", queue="default") == 0
    ups = [k for k in got if k[0] == "qtasks_worker_up"]
    assert len(ups) == 1 and got[ups[0]] == 1
    flight = [k for k in got if k[0] == "qtasks_worker_tasks_in_flight"]
    assert len(flight) == 1 and got[flight[0]] == 0
    assert value(got, "qtasks_workers_alive") == 1
    app.add_task("sleepy", 1.5, tag="m")  # in flight while it sleeps
    wait_until(lambda: got[flight[0]] + sum(v for k, v in scrape(port).items()
                                            if k[0] == "qtasks_worker_tasks_in_flight") == 1,
               what="one task in flight")


def test_processes_are_one_scrape_target_with_their_counts_added(start_worker):
    app = sync_app.app
    app.flush_all()
    port = _free_port()
    start_worker(APP, "--processes", "2", "--metrics-port", str(port), ready=2)
    tasks = app.add_tasks([sync_app.add(i, 1) for i in range(60)])
    assert all(app.wait_sync(t.uuid, 30).status == "success" for t in tasks)
    wait_until(lambda: value(scrape(port), "qtasks_tasks_total", task="add", queue="default",
                             result="success") == 60, what="60 outcomes counted")
    got = scrape(port)
    ups = [k for k in got if k[0] == "qtasks_worker_up"]
    assert len(ups) == 2 and all(got[k] == 1 for k in ups)  # one series per worker process
    flight = [k for k in got if k[0] == "qtasks_worker_tasks_in_flight"]
    assert len(flight) == 2 and all(got[k] == 0 for k in flight)
    assert value(got, "qtasks_task_run_seconds_count", task="add", queue="default") == 60


def test_metrics_without_prometheus_client_is_a_clear_error():
    result = run_cli_without("prometheus_client", "-A", "apps.sync_app:app", "run",
                             "--metrics-port", "1")
    assert result.returncode == 2
    assert "pip install 'qtasks[metrics]'" in result.stderr
