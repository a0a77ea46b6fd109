"""The wire codec: task arguments, results and the queued envelope, all strict JSON.

Strict means what a user of Celery's JSON serializer expects and a little more: values that JSON
cannot carry faithfully are refused when the task is enqueued, not discovered on the worker.
``datetime``, ``set``, ``bytes``, arbitrary objects, non-finite floats (NaN, inf) and text that
is not valid Unicode (a lone surrogate) raise ``TypeError`` naming the offending argument, and
nothing is enqueued. Tuples become lists and
non-string dict keys become strings, exactly as in ``json``.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from qtasks.exceptions import MalformedMessage

ENVELOPE_VERSION = 1

_encoder = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))
dumps = _encoder.encode
loads = json.loads


def _checked(text: str) -> str:
    """``text`` if every store can keep it: ``ValueError`` for a lone surrogate (``"\ud800"``),
    which JSON encodes but UTF-8 cannot."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"text with a lone surrogate {text[exc.start:exc.end]!r} is not "
                             f"valid Unicode and cannot be stored") from None
    return text


def strict_dumps(value: Any) -> str:
    """``dumps``, refusing text that is not valid Unicode (``ValueError``)."""
    return _checked(dumps(value))


def _why(value: Any) -> str:
    try:
        strict_dumps(value)
    except ValueError as exc:  # NaN/inf, circular reference or invalid text
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value!r} is not a finite number"
        return str(exc)
    except TypeError as exc:
        return str(exc)
    return "cannot be encoded as JSON"


def _hint(value: Any) -> str:
    """What to pass instead, for the values people most often try."""
    meta = getattr(type(value), "_meta", None)
    if meta is not None and hasattr(meta, "model_name") and hasattr(value, "pk"):
        return (f"A {type(value).__name__} is a database row: pass its primary key "
                f"({value.pk!r}) and load it inside the task, so the task sees current data.")
    if hasattr(value, "META") and hasattr(value, "method"):
        return ("A request cannot travel to a worker: pass the values the task needs "
                "(a user id, a path, form fields) instead.")
    if isinstance(value, datetime.date | datetime.time):
        return "Pass value.isoformat() and parse it inside the task."
    return ("Pass plain JSON values (str, int, float, bool, None, list, dict), e.g. an ISO "
            "string for a datetime or a primary key for a model.")


def encode_arguments(task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str]:
    """Return ``(args_json, kwargs_json)`` or raise ``TypeError`` naming the bad argument."""
    try:
        return (strict_dumps(list(args)) if args else "[]",
                strict_dumps(kwargs) if kwargs else "{}")
    except (TypeError, ValueError, RecursionError):
        pass  # locate the culprit below for a precise message
    labelled = [(f"positional argument {i}", v) for i, v in enumerate(args)]
    labelled += [(f"argument {k!r}", v) for k, v in kwargs.items()]
    for label, value in labelled:
        try:
            strict_dumps(value)
        except (TypeError, ValueError, RecursionError):
            raise TypeError(
                f"task {task_name!r}: {label} ({type(value).__name__}) is not "
                f"JSON-serialisable: {_why(value)}. {_hint(value)}"
            ) from None
    raise TypeError(f"task {task_name!r}: arguments are not JSON-serialisable")


def encode_result(value: Any) -> str:
    """Encode a task's return value; ``TypeError`` with the reason when JSON cannot carry it."""
    if value is None:  # most tasks return nothing
        return "null"
    try:
        return strict_dumps(value)
    except (TypeError, ValueError, RecursionError):
        raise TypeError(
            f"the task returned a {type(value).__name__}, which is not JSON-serialisable: "
            f"{_why(value)}"
        ) from None


@dataclass(frozen=True, slots=True)
class Envelope:
    """One queued task as the worker sees it."""

    uuid: UUID
    task_name: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    created_at: float
    retry: int | None = None
    """Retries left, on a message that is itself a retry; ``None`` on a first attempt."""
    meta: dict[str, Any] | None = None
    """What an integration sent along for the worker (the Django backend's queue and run_after)."""

    @property
    def name(self) -> str:
        """The task's name under QTasks' field name (``TaskPrioritySchema.name``)."""
        return self.task_name


@functools.lru_cache(maxsize=1024)
def _quoted(name: str) -> str:
    """A task name as a JSON string (names repeat: encoded once each)."""
    return dumps(name)


def encode_envelope(
    uuid: UUID | str, task_name: str, priority: int, args_json: str, kwargs_json: str,
    created_at: float, retry: int | None = None, meta_json: str | None = None,
) -> str:
    """Build the envelope text from already-encoded arguments (no second encoding pass)."""
    tail = "" if retry is None else f',"retry":{int(retry)}'
    if meta_json is not None:
        tail += f',"meta":{meta_json}'
    return (
        f'{{"v":{ENVELOPE_VERSION},"uuid":"{uuid}","task":{_quoted(task_name)},'
        f'"priority":{int(priority)},"created_at":{created_at!r},'
        f'"args":{args_json},"kwargs":{kwargs_json}{tail}}}'
    )


def with_meta(envelope: str, key: str, value: Any) -> str:
    """``envelope`` with ``meta[key] = value`` (what an integration sends along)."""
    data = loads(envelope)
    meta = data.get("meta")
    data["meta"] = {**(meta if isinstance(meta, dict) else {}), key: value}
    return dumps(data)


_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # what json.loads ends in


def _load(raw: str | bytes) -> Any:
    """``json.loads(raw)`` for a message, minus the steps a worker pays for on every task:
    the encoding guess for bytes, and the whitespace checks around a text that has none. Any
    other text goes to ``json.loads``, which has the last word and the error message."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        data, end = _scan(text, 0)
    except (ValueError, StopIteration, TypeError):  # UnicodeDecodeError is a ValueError
        return loads(raw)
    return data if end == len(text) else loads(raw)


def decode_envelope(raw: str | bytes) -> Envelope:
    """Parse and validate an envelope; ``MalformedMessage`` says what is wrong with it."""
    try:
        data = _load(raw)
    except (ValueError, TypeError) as exc:
        raise MalformedMessage(f"message is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedMessage(f"message is a JSON {type(data).__name__}, expected an object")
    if data.get("v") != ENVELOPE_VERSION:
        raise MalformedMessage(f"unsupported envelope version {data.get('v')!r}")
    try:
        uuid = UUID(str(data["uuid"]))
    except (KeyError, ValueError):
        raise MalformedMessage("message has no valid 'uuid'") from None
    name, args, kwargs = data.get("task"), data.get("args"), data.get("kwargs")
    priority, created_at = data.get("priority"), data.get("created_at")
    if not isinstance(name, str) or not name:
        raise MalformedMessage("message has no task name ('task')")
    if not isinstance(args, list):
        raise MalformedMessage("message 'args' is not a list")
    if not isinstance(kwargs, dict):
        raise MalformedMessage("message 'kwargs' is not an object")
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise MalformedMessage("message 'priority' is not an integer")
    if not isinstance(created_at, int | float):
        raise MalformedMessage("message 'created_at' is not a number")
    retry = data.get("retry")
    if retry is not None and (not isinstance(retry, int) or isinstance(retry, bool) or retry < 0):
        raise MalformedMessage("message 'retry' is not a whole number >= 0")
    meta = data.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise MalformedMessage("message 'meta' is not an object")
    return Envelope(uuid, name, priority, args, kwargs, float(created_at), retry, meta)
