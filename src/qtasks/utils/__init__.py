"""QTasks import paths ``qtasks.utils.shared_task`` and ``qtasks.utils.get_app``."""

from typing import Any

from qtasks.chains import AsyncTaskUtils, SyncTaskUtils
from qtasks.core import apps as _state
from qtasks.shared import shared_task


def get_app() -> Any:
    """The most recently created app, or ``None``."""
    return _state.app_main


__all__ = ["AsyncTaskUtils", "SyncTaskUtils", "get_app", "shared_task"]
