"""QTasks import path ``qtasks.types``: its typing helpers."""

from typing import Literal, ParamSpec, TypeVar

P = ParamSpec("P")  # a task function's parameters
R = TypeVar("R")  # a task function's return type
T = TypeVar("T")
TAsyncFlag = TypeVar("TAsyncFlag", Literal[True], Literal[False])  # marks async components

__all__ = ["P", "R", "T", "TAsyncFlag"]
