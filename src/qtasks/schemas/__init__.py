"""QTasks import paths for schemas (``qtasks.schemas.task.Task``)."""

from qtasks.core.definition import TaskDefinition as TaskExecSchema
from qtasks.core.record import Task


def __getattr__(name: str) -> object:
    if name == "TestConfig":  # imported lazily: it pulls in the worker
        from qtasks.testing import TestConfig

        return TestConfig
    raise AttributeError(name)


__all__ = ["Task", "TaskExecSchema", "TestConfig"]
