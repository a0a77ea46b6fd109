"""OpenTelemetry: one trace from ``add_task`` to the task's end, through a real worker (on a
thread of this process, so the SDK's in-memory exporter sees both sides)."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import contextmanager

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from helpers import wait_until
from qtasks import QueueTasks
from qtasks.asyncio import QueueTasks as AsyncQueueTasks
from qtasks.contrib.otel import instrument
from qtasks.worker import Worker


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter, provider
    provider.shutdown()


@contextmanager
def running(app):
    worker = Worker(app, concurrency=2, install_signals=False)
    thread = threading.Thread(target=lambda: asyncio.run(worker.run()), daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        wait_until(lambda: worker._loop is not None, what="the worker's loop")
        worker.request_stop()
        thread.join(15)


def _app(cls, tmp_path, name):
    app = cls(name=name, broker_url=f"sqlite:///{tmp_path}/{name}.sqlite3")

    @app.task
    def add(a, b):
        return a + b

    @app.task(retry=1)
    def broken():
        raise LookupError("nothing here")

    return app


def _by_name(exporter):
    return {s.name: s for s in exporter.get_finished_spans()}


def test_one_trace_runs_from_add_task_to_the_tasks_end(spans, tmp_path):
    exporter, provider = spans
    app = _app(QueueTasks, tmp_path, "traced")
    instrument(app.hooks, tracer_provider=provider)
    with running(app):
        done = app.add_task("add", 2, 3, timeout=20)
    assert done.returning == 5
    wait_until(lambda: "process add" in _by_name(exporter), what="the worker's span")
    send, process = _by_name(exporter)["send add"], _by_name(exporter)["process add"]
    assert (send.kind, process.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert process.context.trace_id == send.context.trace_id
    assert process.parent.span_id == send.context.span_id
    assert process.attributes["messaging.message.id"] == str(done.uuid)
    assert send.attributes["messaging.destination.name"] == "default"
    assert process.status.status_code != StatusCode.ERROR
    assert process.end_time >= process.start_time >= send.start_time


def test_a_retry_joins_the_trace_and_links_to_the_attempt_before_it(spans, tmp_path):
    exporter, provider = spans
    app = _app(QueueTasks, tmp_path, "retried")
    instrument(app.hooks, tracer_provider=provider)
    with running(app):
        task = app.add_task("broken")
        wait_until(lambda: len([s for s in exporter.get_finished_spans()
                                if s.name == "process broken"]) == 2, what="two attempts")
    send = _by_name(exporter)["send broken"]
    first, second = sorted((s for s in exporter.get_finished_spans()
                            if s.name == "process broken"), key=lambda s: s.start_time)
    assert {first.context.trace_id, second.context.trace_id} == {send.context.trace_id}
    assert first.parent.span_id == second.parent.span_id == send.context.span_id
    assert [link.context.span_id for link in second.links] == [first.context.span_id]
    assert first.links == () or list(first.links) == []
    for attempt in (first, second):
        assert attempt.status.status_code == StatusCode.ERROR
        assert attempt.events[0].attributes["exception.type"] == "LookupError"
    assert app.get(task.uuid).status == "retry"


def test_the_async_app_is_traced_the_same_way(spans, tmp_path):
    exporter, provider = spans
    app = _app(AsyncQueueTasks, tmp_path, "atraced")
    instrument(app.hooks, tracer_provider=provider)
    with running(app):
        done = asyncio.run(app.add_task("add", 4, 5, timeout=20))
    assert done.returning == 9
    wait_until(lambda: "process add" in _by_name(exporter), what="the worker's span")
    send, process = _by_name(exporter)["send add"], _by_name(exporter)["process add"]
    assert process.parent.span_id == send.context.span_id
    assert send.end_time >= send.start_time


def test_an_app_not_instrumented_makes_no_span(spans, tmp_path):
    exporter, _provider = spans
    app = _app(QueueTasks, tmp_path, "plain")
    with running(app):
        assert app.add_task("add", 1, 1, timeout=20).returning == 2
    time.sleep(0.1)
    assert exporter.get_finished_spans() == ()
