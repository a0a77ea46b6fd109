"""``--log-format json``: every log line as one JSON object, and one line per task outcome.

Without it the worker writes no line per task (the hot path stays cheap); with it, each task a
worker runs adds one ``qtasks.task`` line: its uuid, name, queue, result (``success``,
``error``, ``cancel``, ``retry`` or ``dead_letter``), run time and time waited since enqueue.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from qtasks.core.hooks import TaskDone, process_hooks

FORMATS = ("text", "json")
task_log = logging.getLogger("qtasks.task")


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object: time (UTC, ISO 8601), level, logger, message, the
    fields a qtasks line carries (``extra={"qtasks": {...}}``) and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        fields = getattr(record, "qtasks", None)
        if fields:
            data.update(fields)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def log_task(done: TaskDone) -> None:
    """The ``task_done`` layer of ``--log-format json``: one line per outcome."""
    outcome, result = done.outcome, done.result
    waited = done.waited
    fields = {"uuid": outcome.uuid, "task_name": outcome.task_name, "queue": done.queue,
              "result": result, "seconds": round(done.seconds, 6),
              "waited": None if waited is None else round(waited, 6),
              "deliveries": done.deliveries}
    if outcome.dead_letter:
        fields["reason"] = outcome.dead_letter
    level = logging.WARNING if result in ("error", "dead_letter") else logging.INFO
    task_log.log(level, "task %s %s: %s", outcome.task_name, outcome.uuid, result,
                 extra={"qtasks": fields})


def configure(level: str, fmt: str) -> None:
    """The CLI's logging: text as before, or JSON lines with a line per task outcome."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: one of {', '.join(FORMATS)}")
    if fmt == "text":
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler])
    if log_task not in process_hooks.layers("task_done"):
        process_hooks.add("task_done", log_task)
