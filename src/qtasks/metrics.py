"""Prometheus metrics of workers: ``qtasks run --metrics-port N`` (``pip install
'qtasks[metrics]'``, prometheus-client).

A worker counts what it runs through the ``task_done`` hook, so a worker without metrics pays
nothing; tasks in flight are read from the worker at each scrape (under a supervisor, the count
is written as each task ends). The queue's own figures (tasks waiting
per queue, running, delayed, dead letters, live workers) are read from the backend at each
scrape. With ``--processes N`` the supervisor serves the one endpoint: its children write their
samples to files in a shared folder (prometheus-client's multiprocess mode) and the supervisor
adds them up.

Names follow Prometheus' conventions: a ``qtasks_`` prefix, ``_total`` on counters, base units
(``_seconds``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qtasks.app import BaseQueueTasks

log = logging.getLogger("qtasks.metrics")

CHILD = "QTASKS_METRICS_CHILD"  # set by the supervisor: count, but let the supervisor serve
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0, 300.0)


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise RuntimeError("metrics need prometheus-client: pip install 'qtasks[metrics]'") \
            from None
    return prometheus_client


class WorkerMetrics:
    """The metrics one worker process keeps, and the hook layers that keep them."""

    def __init__(self) -> None:
        prom = _client()
        self.tasks = prom.Counter(
            "qtasks_tasks", "Tasks this worker finished, by task name, queue and result "
            "(success, error, cancel, retry, dead_letter)", ["task", "queue", "result"])
        self.run_seconds = prom.Histogram(
            "qtasks_task_run_seconds", "How long tasks ran", ["task", "queue"], buckets=BUCKETS)
        self.wait_seconds = prom.Histogram(
            "qtasks_task_wait_seconds", "Time from enqueue to start", ["task", "queue"],
            buckets=BUCKETS)
        self.in_flight = prom.Gauge("qtasks_worker_tasks_in_flight", "Tasks running in a worker",
                                    ["worker"], multiprocess_mode="liveall")
        self.up = prom.Gauge("qtasks_worker_up", "1 while a worker runs", ["worker"],
                             multiprocess_mode="liveall")
        self.shared = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # the labelled series of each (task, queue), made once: labels() takes a lock and
        # builds a key at every call, which cost about 10 us a task
        self._series: dict[tuple[str, str], tuple[dict[str, Any], Any, Any]] = {}
        self._flight: Any = None

    def install(self, app: BaseQueueTasks) -> None:
        hooks = app.hooks
        hooks.add("worker_started", self._started)
        hooks.add("worker_stopping", self._stopping)
        hooks.add("task_done", self._done)

    def _started(self, worker: Any) -> None:
        self.up.labels(worker.id).set(1)
        self._flight = self.in_flight.labels(worker.id)
        if self.shared:  # files cannot call back: the count is written as tasks end
            self._flight.set(0)
        else:
            self._flight.set_function(lambda: len(worker._running))

    def _stopping(self, worker: Any) -> None:
        self.up.labels(worker.id).set(0)

    def _done(self, done: Any) -> None:
        key = (done.outcome.task_name, done.queue)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                {}, self.run_seconds.labels(*key), self.wait_seconds.labels(*key))
        counters, run, wait = series
        result = done.result
        counter = counters.get(result)
        if counter is None:
            counter = counters[result] = self.tasks.labels(*key, result)
        counter.inc()
        run.observe(done.seconds)
        waited = done.waited
        if waited is not None:
            wait.observe(waited)
        if self.shared and self._flight is not None:
            self._flight.set(len(done.worker._running) - 1)  # this one is about to leave


class QueueCollector:
    """The backend's figures, read at each scrape."""

    def __init__(self, app: BaseQueueTasks) -> None:
        self.app = app

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            stats = self.app.client.stats()
        except Exception as exc:  # the scrape still answers, with the workers' figures
            log.warning("metrics: cannot read the queue's figures from the backend: %s", exc)
            return
        waiting = GaugeMetricFamily("qtasks_queue_waiting", "Tasks waiting in a queue "
                                    "(delayed ones included)", labels=["queue"])
        by_queue = dict(stats.by_queue)
        for name in self.app.config.worker_queues:
            by_queue.setdefault(name, 0)
        for name, count in sorted(by_queue.items()):
            waiting.add_metric([name], count)
        yield waiting
        yield GaugeMetricFamily("qtasks_queue_delayed", "Waiting tasks not due yet",
                                value=stats.delayed)
        yield GaugeMetricFamily("qtasks_queue_running", "Tasks claimed by workers",
                                value=stats.running)
        yield GaugeMetricFamily("qtasks_dead_letters", "Dead letters kept",
                                value=stats.dead_letters)
        yield GaugeMetricFamily("qtasks_workers_alive", "Workers whose heartbeat holds",
                                value=stats.workers)


def serve(app: BaseQueueTasks, port: int, host: str = "127.0.0.1",
          multiprocess_dir: str | None = None) -> Any:
    """Serve ``/metrics`` on ``host:port`` from a thread: this process's metrics, or those of
    the children that write to ``multiprocess_dir``, and the backend's. Returns the server."""
    prom = _client()
    if multiprocess_dir is not None:
        from prometheus_client import multiprocess

        registry = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
    else:
        registry = prom.REGISTRY
    registry.register(QueueCollector(app))
    server, _thread = prom.start_http_server(port, addr=host, registry=registry)
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server


def start_worker_metrics(app: BaseQueueTasks, port: int, host: str) -> None:
    """What ``qtasks run --metrics-port`` does in a worker process: count, and serve unless a
    supervisor serves for it."""
    WorkerMetrics().install(app)
    if not os.environ.get(CHILD):
        serve(app, port, host)


def process_dead(pid: int) -> None:
    """A supervisor's child is gone: drop its live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
