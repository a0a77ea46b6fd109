"""Task statuses."""

from __future__ import annotations

from enum import StrEnum


class TaskStatusEnum(StrEnum):
    """The status of a task record. ``str`` subclass: ``TaskStatusEnum.SUCCESS == "success"``."""

    NEW = "new"
    PROCESS = "process"
    SUCCESS = "success"
    ERROR = "error"
    CANCEL = "cancel"


FINAL_STATUSES: frozenset[str] = frozenset({"success", "error", "cancel"})
