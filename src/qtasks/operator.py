"""What an operator reads from the queue and does to it, on any backend: the ``qtasks tasks``
and ``qtasks queues`` commands use it (and the dashboard and the Django admin will).

Everything goes through the app's blocking client (``app.client``), so it works the same for
the sync and the async app, and on every backend the contract covers. Values come back as plain
data (dicts of JSON values) ready to print as a table or as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from qtasks.core.record import Task, record_from_row
from qtasks.core.status import FINAL_STATUSES

if TYPE_CHECKING:
    from qtasks.app import BaseQueueTasks

STATUSES = ("new", "process", "success", "error", "cancel")


def when(value: datetime | float | None) -> str | None:
    """An ISO 8601 UTC time, to the second."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(value, tz=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


def parse_when(text: str) -> float:
    """``--before``: epoch seconds, or an ISO 8601 time (UTC unless it names a zone)."""
    try:
        return float(text)
    except ValueError:
        pass  # not a number: read it as an ISO time below
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (give epoch seconds or an ISO time such as "
                         "2026-12-06T10:00:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def task_summary(task: Task) -> dict[str, Any]:
    """One row of ``qtasks tasks list``."""
    return {"uuid": str(task.uuid), "task_name": task.task_name, "status": task.status,
            "priority": task.priority, "created_at": when(task.created_at),
            "updated_at": when(task.updated_at)}


def task_detail(task: Task) -> dict[str, Any]:
    """Everything a record holds (``qtasks tasks show``)."""
    detail = task_summary(task)
    detail.update(
        args=list(task.args), kwargs=task.kwargs, returning=task.returning,
        traceback=task.traceback, retry=task.retry,
        retry_parent_uuid=str(task.retry_parent_uuid) if task.retry_parent_uuid else None,
        retry_child_uuid=str(task.retry_child_uuid) if task.retry_child_uuid else None,
        extra=task.extra)
    return detail


def list_tasks(app: BaseQueueTasks, *, status: str | None = None, task_name: str | None = None,
               limit: int = 20, before: float | None = None) -> list[Task]:
    """Records, newest first; ``before`` (epoch seconds) pages on the creation time: pass the
    ``created_at`` of the last row to get the next page."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}: one of {', '.join(STATUSES)}")
    if limit < 1:
        raise ValueError("the limit must be at least 1")
    rows = app.client.search(status=status, task_name=task_name, limit=limit, before=before)
    return [record_from_row(row, app) for row in rows]


def find_task(app: BaseQueueTasks, uuid: str) -> Task | None:
    """The record of ``uuid``; ``ValueError`` if ``uuid`` is not one."""
    try:
        key = str(UUID(uuid))
    except ValueError:
        raise ValueError(f"not a task id: {uuid!r}") from None
    row = app.client.get(key)
    return None if row is None else record_from_row(row, app)


@dataclass
class CancelResult:
    cancelled: bool
    status: str | None  # the record's status after the attempt (None: no such task)

    @property
    def reason(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.status is None:
            return "no such task"
        if self.status in FINAL_STATUSES:
            return f"already final ({self.status})"
        return f"a worker has started it ({self.status})"


def cancel_task(app: BaseQueueTasks, uuid: str, reason: str = "") -> CancelResult:
    """Cancel a task no worker has started (as ``app.cancel``), saying why not if it cannot."""
    task = find_task(app, uuid)
    if task is None:
        return CancelResult(False, None)
    done = app.client.cancel(str(task.uuid), reason or "cancelled by an operator")
    after = find_task(app, uuid)
    return CancelResult(done, after.status if after is not None else None)


def queue_rows(app: BaseQueueTasks) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``qtasks queues``: the waiting tasks of each queue, and the totals of the backend
    (waiting, of them delayed, claimed by workers, records, dead letters, live workers)."""
    stats = app.client.stats()
    counts = stats.as_dict()
    by_queue = dict(counts.pop("by_queue", None) or {})
    for name in app.config.worker_queues:
        by_queue.setdefault(name, 0)
    rows = [{"queue": name, "waiting": n} for name, n in sorted(by_queue.items())]
    return rows, counts


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as an aligned text table with a header; empty cells as ``-``."""
    cells = [[("-" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)
