"""``QueueConfig`` and its environment overrides.

Every field can be set from the environment as ``QTASKS_<FIELD>`` (the prefix is
``environ_prefix``), parsed by the field's declared type: ``1/true/yes/on`` for booleans, a comma
separated or JSON list for lists, ``none`` (or an empty string) for optional fields. A value that
cannot be parsed raises ``ValueError`` naming the variable instead of being ignored.
"""

from __future__ import annotations

import json
import logging
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from qtasks.core.urls import redact

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(kind: Any, text: str, var: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if text.strip().lower() in {"", "none", "null"}:
            return None
        return _parse(options[0], text, var)
    if kind is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"{var}={text!r}: expected one of {sorted(_TRUE | _FALSE)}")
    if kind in (int, float, str):
        try:
            return kind(text.strip() if kind is not str else text)
        except ValueError:
            raise ValueError(f"{var}={text!r}: expected {kind.__name__}") from None
    if origin is list or kind is list:
        text = text.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"{var}={text!r}: not a valid JSON list ({exc})") from None
            if not isinstance(value, list):
                raise ValueError(f"{var}={text!r}: expected a list")
            return [str(v) for v in value]
        return [part.strip() for part in text.split(",") if part.strip()]
    raise ValueError(f"{var}: this field cannot be set from the environment")


LOOPS = ("auto", "asyncio", "uvloop")  # the choices of worker_event_loop


@dataclass
class QueueConfig:
    """Settings shared by the app, its backend and its workers (one instance per app)."""

    max_tasks_process: int = 10
    """How many tasks one worker process runs at a time (``--concurrency`` overrides it)."""
    running_older_tasks: bool = False
    """Kept for QTasks compatibility; unfinished tasks are always re-delivered after their lease."""
    delete_finished_tasks: bool = False
    """At worker start, delete records that reached a final status."""
    task_default_priority: int = 0
    task_default_decode: Callable[..., Any] | None = None
    logs_default_level_server: int = logging.INFO
    logs_default_level_client: int = logging.INFO
    logs_format: str = "%(asctime)s [%(name)s: %(levelname)s] %(message)s"
    result_time_interval: float = 1.0
    """Kept for QTasks compatibility; waiting uses the backend's change notification instead."""
    result_statuses_end: list[str] = field(default_factory=lambda: ["success", "error", "cancel"])
    environ_prefix: str = "QTASKS_"
    broker_url: str | None = None
    """Backend URL; ``None`` selects the embedded SQLite file (see docs/getting-started.md)."""
    storage_url: str | None = None
    """Result-store URL; ``None`` keeps the records in the broker's technology."""
    visibility_timeout: float = 60.0
    """Seconds a claimed task stays leased without a heartbeat before another worker may run it."""
    max_deliveries: int = 5
    """A task whose worker died while running it this many times is recorded as ``error``
    (``WorkerLostError``) and dead-lettered."""
    worker_prefetch: int | None = None
    """Tasks a worker claims beyond those it runs; ``None`` means as many as it runs."""
    worker_shutdown_grace: float = 30.0
    """Seconds running tasks get to finish after SIGTERM before the worker stops hard."""
    eager: bool = False
    """Run each task at once, in-process, when it is enqueued (tests; see qtasks.testing)."""
    worker_queues: list[str] = field(default_factory=lambda: ["default"])
    """The named queues a worker takes tasks from (``--queues`` overrides it)."""
    worker_event_loop: str = "auto"
    """The event loop of ``qtasks run`` and ``run_forever``: ``auto`` (uvloop when it is
    installed, as with ``pip install 'qtasks[uvloop]'``, else asyncio's own), ``asyncio`` or
    ``uvloop`` (``--loop`` overrides it)."""

    def __post_init__(self) -> None:
        self._subscribers: list[Callable[[QueueConfig, str, Any], None]] = []
        self._dynamic_fields: dict[str, Any] = {}
        self.apply_environment()
        self._ready = True

    def apply_environment(self, environ: typing.Mapping[str, str] | None = None) -> None:
        """Override fields from ``<environ_prefix><FIELD>`` variables."""
        environ = os.environ if environ is None else environ
        prefix = self.environ_prefix.upper()
        hints = typing.get_type_hints(type(self))
        wanted = {f.name.upper(): f.name for f in fields(self)}
        for key, text in environ.items():
            if not key.upper().startswith(prefix):
                continue
            name = wanted.get(key.upper()[len(prefix) :])
            if name is None or name == "environ_prefix":
                continue
            object.__setattr__(self, name, _parse(hints[name], text, key))

    def subscribe(self, callback: Callable[[QueueConfig, str, Any], None]) -> None:
        """Call ``callback(config, key, value)`` after every later assignment."""
        self._subscribers.append(callback)

    def __setattr__(self, key: str, value: Any) -> None:
        if not self.__dict__.get("_ready") or key.startswith("_"):
            object.__setattr__(self, key, value)
            return
        if key in {f.name for f in fields(self)}:
            object.__setattr__(self, key, value)
        else:
            self._dynamic_fields[key] = value
        for callback in self._subscribers:
            callback(self, key, value)

    def __getattr__(self, key: str) -> Any:
        dynamic = self.__dict__.get("_dynamic_fields", {})
        if key in dynamic:
            return dynamic[key]
        raise AttributeError(f"QueueConfig has no field {key!r}")

    def __repr__(self) -> str:
        """Every field, as a dataclass shows them, but the URLs with their passwords masked:
        a debugger, a test runner's locals or an error tracker shows this object."""
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_url") and isinstance(value, str):
                value = redact(value)
            shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def prefetch(self, concurrency: int) -> int:
        """How many tasks beyond ``concurrency`` a worker claims."""
        return concurrency if self.worker_prefetch is None else max(0, self.worker_prefetch)
