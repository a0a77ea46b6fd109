"""The task record a producer reads back: ``Task``.

A record is built from the backend's stored columns by :func:`record_from_row`; every backend
stores the same logical fields (see ``RecordRow``), so this is the one place that turns stored
values into the public dataclass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict
from uuid import UUID

if TYPE_CHECKING:
    from qtasks.app import BaseQueueTasks


class RecordRow(TypedDict, total=False):
    """A record as a backend stores it: JSON text for the structured fields, floats for times."""

    uuid: str
    task_name: str
    priority: int
    status: str
    args: str
    kwargs: str
    created_at: float
    updated_at: float
    returning: str | None
    traceback: str | None
    extra: str | None
    queue: str | None  # the queue it was sent to (None: a record from before it was kept)


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


@dataclass
class Task:
    """A task record. ``args`` is a tuple, ``uuid`` a ``UUID``, times are aware UTC datetimes.

    Fields beyond the documented ones (``cancel_reason`` and what plugins store) are readable as
    attributes too: ``task.cancel_reason``.
    """

    status: str
    uuid: UUID
    priority: int
    task_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    returning: Any = None
    traceback: str | None = None
    retry: int | None = None
    retry_child_uuid: UUID | None = None
    retry_parent_uuid: UUID | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    queue: str | None = field(default=None, repr=False, compare=False)
    """The queue the task was sent to (not in QTasks' record; None where unknown)."""
    _app: BaseQueueTasks | None = field(default=None, repr=False, compare=False)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: expose stored extra fields as attributes.
        extra = self.__dict__.get("extra")
        if extra is not None and name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def wait_result(self, timeout: float = 100.0) -> Task | None:
        """Block until the task reaches a final status; ``None`` if ``timeout`` passes first."""
        from qtasks.core.apps import resolve_app

        return resolve_app(self._app).wait_sync(self.uuid, timeout)

    async def wait_result_async(self, timeout: float = 100.0) -> Task | None:
        """Await the task's final record; ``None`` if ``timeout`` passes first."""
        from qtasks.core.apps import resolve_app

        return await resolve_app(self._app).wait_async(self.uuid, timeout)


def _opt_uuid(value: Any) -> UUID | None:
    return UUID(str(value)) if value else None


def record_from_row(row: RecordRow, app: BaseQueueTasks | None = None) -> Task:
    """Build a ``Task`` from stored columns. Unknown extra keys stay in ``extra``."""
    raw_extra = row.get("extra")
    extra: dict[str, Any] = json.loads(raw_extra) if raw_extra else {}
    returning = row.get("returning")
    return Task(
        status=row["status"],
        uuid=UUID(row["uuid"]),
        priority=int(row["priority"]),
        task_name=row["task_name"],
        args=tuple(json.loads(row["args"])),
        kwargs=json.loads(row["kwargs"]),
        created_at=_ts(row["created_at"]),
        updated_at=_ts(row["updated_at"]),
        returning=json.loads(returning) if returning is not None else None,
        traceback=row.get("traceback"),
        retry=extra.pop("retry", None),
        retry_child_uuid=_opt_uuid(extra.pop("retry_child_uuid", None)),
        retry_parent_uuid=_opt_uuid(extra.pop("retry_parent_uuid", None)),
        extra=extra,
        queue=row.get("queue"),
        _app=app,
    )
