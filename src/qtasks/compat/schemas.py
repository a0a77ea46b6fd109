"""QTasks' schema dataclasses that qtasks does not use itself.

The status schemas were QTasks' Redis hash layouts per status; ``GlobalConfigSchema`` its
global-config hash; ``ArgMeta`` what its executors told plugins about each argument;
``InitsExecSchema`` an event handler. They are plain data here, for code that builds or
annotates with them. ``TaskPrioritySchema`` builds the message qtasks' executors get
(:class:`~qtasks.core.codec.Envelope`) from QTasks' field names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from qtasks.core.codec import Envelope


class TaskPrioritySchema(Envelope):
    """A queued task as a worker sees it, from QTasks' fields (``name`` is the task name)."""

    __slots__ = ()

    def __init__(self, priority: int, uuid: UUID | str, name: str, args: Any = (),
                 kwargs: dict[str, Any] | None = None, created_at: float = 0.0,
                 updated_at: float = 0.0) -> None:
        super().__init__(uuid=UUID(str(uuid)), task_name=name, priority=priority,
                         args=list(args), kwargs=dict(kwargs or {}), created_at=created_at)


@dataclass
class BaseTaskStatusSchema:
    task_name: str = ""
    priority: int = 0
    args: Any = "[]"
    kwargs: Any = "{}"
    created_at: float = 0.0
    updated_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:  # QTasks kept the arguments JSON-encoded
        if not isinstance(self.args, str):
            self.args = json.dumps(list(self.args))
        if not isinstance(self.kwargs, str):
            self.kwargs = json.dumps(self.kwargs)


@dataclass
class TaskStatusNewSchema(BaseTaskStatusSchema):
    status: str = "new"


@dataclass
class TaskStatusProcessSchema(BaseTaskStatusSchema):
    status: str = "process"


@dataclass
class TaskStatusSuccessSchema(BaseTaskStatusSchema):
    status: str = "success"
    returning: Any = ""


@dataclass
class TaskStatusErrorSchema(BaseTaskStatusSchema):
    status: str = "error"
    traceback: str = ""
    retry: int | None = None
    retry_child_uuid: str | None = None
    retry_parent_uuid: str | None = None


@dataclass
class TaskStatusCancelSchema(BaseTaskStatusSchema):
    status: str = "cancel"
    cancel_reason: str = ""


@dataclass
class GlobalConfigSchema:
    name: str
    status: str


@dataclass
class ArgMeta:
    name: str
    value: Any
    origin: type | None
    raw_type: type | None
    annotation: Any
    is_kwarg: bool
    index: int | None = None
    key: str | None = None


@dataclass
class InitsExecSchema:
    name: str
    func: Callable[..., Any]
    awaiting: bool = False


__all__ = [
    "ArgMeta", "BaseTaskStatusSchema", "GlobalConfigSchema", "InitsExecSchema",
    "TaskPrioritySchema", "TaskStatusCancelSchema", "TaskStatusErrorSchema",
    "TaskStatusNewSchema", "TaskStatusProcessSchema", "TaskStatusSuccessSchema",
]
