"""QTasks' ``TaskRegistry``: the process-wide table of shared tasks (``shared_task``), which in
qtasks every app consults when it looks a task up (``qtasks.shared``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtasks.core.definition import TaskDefinition
from qtasks.shared import registry, shared_task


class TaskRegistry:
    _tasks = registry  # the live table: name -> TaskExecSchema

    @classmethod
    def register(cls, name: str | Callable[..., Any] | None = None, priority: int = 0,
                 awaiting: bool = False, **options: Any) -> Any:
        """``shared_task`` under QTasks' registry name: a decorator, or the handle when
        applied to a function directly."""
        decorate: Any = shared_task
        return decorate(name, priority=priority, awaiting=awaiting, **options)

    @classmethod
    def get_task(cls, name: str) -> TaskDefinition | None:
        return registry.get(name)

    @classmethod
    def all_tasks(cls) -> dict[str, TaskDefinition]:
        return registry


__all__ = ["TaskRegistry"]
