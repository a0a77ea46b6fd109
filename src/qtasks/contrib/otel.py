"""OpenTelemetry traces for qtasks (``pip install 'qtasks[otel]'``).

``instrument()`` adds two layers to the process's hooks:

- at enqueue (the ``enqueue`` onion), a PRODUCER span ``send <task>`` around the send; the
  span's context travels to the worker in the message (``meta["otel"]``, W3C trace context,
  through the globally configured propagator);
- at run (the ``task_run`` onion), a CONSUMER span ``process <task>`` around the task's call,
  a child of the producer span: one trace from ``add_task`` to the task's end. A failed run
  records the exception and an ERROR status. A retry is a new message carrying the same
  context, so its run joins the same trace, and its span links to the attempt before it.

qtasks only uses the API (``opentelemetry-api``); what records and exports the spans is the
application's own SDK set-up. Without one, the spans cost little and record nothing. Call
``instrument()`` where the app is defined, so that producers and workers both run it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from qtasks.core.codec import with_meta
from qtasks.core.hooks import Hooks, process_hooks
from qtasks.version import __version__

META_KEY = "otel"  # the producer's context, as propagator fields (traceparent, tracestate)
PREVIOUS_KEY = "otel_attempt"  # the context of the run that failed and queued this retry

_installed: list[Hooks] = []


def instrument(hooks: Hooks | None = None, tracer_provider: Any = None) -> None:
    """Trace every app of this process (or only those using ``hooks``, e.g. ``app.hooks``).
    Calling it again does nothing."""
    target = process_hooks if hooks is None else hooks
    if any(existing is target for existing in _installed):
        return
    tracer = trace.get_tracer("qtasks", __version__, tracer_provider=tracer_provider)
    target.add("enqueue", _producer(tracer))
    target.add("task_run", _consumer(tracer))
    _installed.append(target)


def _attributes(task_name: str, uuid: Any, queue: str | None) -> dict[str, Any]:
    attributes = {"messaging.system": "qtasks", "messaging.operation.type": "send",
                  "messaging.message.id": str(uuid), "qtasks.task_name": task_name}
    if queue is not None:
        attributes["messaging.destination.name"] = queue
    return attributes


def _producer(tracer: trace.Tracer) -> Callable[[Any, Callable[[], Any]], Any]:
    def layer(ctx: Any, call_next: Callable[[], Any]) -> Any:
        new = ctx.new
        span = tracer.start_span(f"send {new.task_name}", kind=SpanKind.PRODUCER,
                                 attributes=_attributes(new.task_name, new.uuid, new.queue))
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            if carrier:
                ctx.new = replace(new, envelope=with_meta(new.envelope, META_KEY, carrier))
            result = call_next()
        except BaseException as exc:
            _fail(span, exc)
            span.end()
            raise
        finally:
            otel_context.detach(token)
        if ctx.awaiting:  # the send happens when the app awaits it: end the span then
            return _finish_async(span, result)
        span.end()
        return result

    return layer


async def _finish_async(span: Any, result: Awaitable[Any]) -> Any:
    try:
        return await result
    except BaseException as exc:
        _fail(span, exc)
        raise
    finally:
        span.end()


def _consumer(tracer: trace.Tracer) -> Callable[[Any, Callable[[], Any]], Any]:
    async def layer(run: Any, call_next: Callable[[], Awaitable[Any]]) -> Any:
        env = run.task_broker
        meta = getattr(env, "meta", None) or {}
        carrier = meta.get(META_KEY)
        parent = propagate.extract(carrier) if isinstance(carrier, dict) else None
        links = []
        previous = meta.get(PREVIOUS_KEY)
        if isinstance(previous, dict):
            linked = trace.get_current_span(propagate.extract(previous)).get_span_context()
            if linked.is_valid:
                links.append(Link(linked, {"qtasks.link": "previous attempt"}))
        attributes = _attributes(env.task_name, env.uuid, None)
        attributes["messaging.operation.type"] = "process"
        if getattr(env, "retry", None) is not None:
            attributes["qtasks.retries_left"] = env.retry
        span = tracer.start_span(f"process {env.task_name}", context=parent,
                                 kind=SpanKind.CONSUMER, attributes=attributes, links=links)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            if env.meta is not None:
                # should this run fail and be retried, the retry's message (built from this
                # envelope's meta) names this run, and the next run links to it
                mine: dict[str, str] = {}
                propagate.inject(mine)
                env.meta[PREVIOUS_KEY] = mine
            result = await call_next()
        except BaseException as exc:
            _fail(span, exc)
            raise
        finally:
            otel_context.detach(token)
            span.end()
        return result

    return layer


def _fail(span: Any, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
