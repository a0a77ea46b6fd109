"""QTasks import paths for schemas (``qtasks.schemas.task.Task``)."""

from qtasks.compat.schemas import (
    GlobalConfigSchema,
    TaskStatusErrorSchema,
    TaskStatusNewSchema,
    TaskStatusProcessSchema,
    TaskStatusSuccessSchema,
)
from qtasks.core.definition import TaskDefinition as TaskExecSchema
from qtasks.core.record import Task


def __getattr__(name: str) -> object:
    if name == "TestConfig":  # imported lazily: it pulls in the worker
        from qtasks.testing import TestConfig

        return TestConfig
    raise AttributeError(name)


__all__ = [
    "GlobalConfigSchema", "Task", "TaskExecSchema", "TaskStatusErrorSchema",
    "TaskStatusNewSchema", "TaskStatusProcessSchema", "TaskStatusSuccessSchema", "TestConfig",
]
