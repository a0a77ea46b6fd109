"""Process-wide app bookkeeping (pure: no I/O, no other qtasks module).

``app_main`` is the most recently created app: handles bound to no app (shared tasks) enqueue to
it, as in QTasks. ``apps`` holds every live app, so a shared task can be checked for a name clash.
"""

from __future__ import annotations

import weakref
from typing import Any

app_main: Any = None
log_main: Any = None  # the logger of app_main (QTasks' name)
apps: weakref.WeakSet[Any] = weakref.WeakSet()


def resolve_app(app: Any = None) -> Any:
    """``app`` itself, else the most recently created app; ``ImportError`` if there is none."""
    found = app if app is not None else app_main
    if found is None:
        raise ImportError("Unable to get app! Create a QueueTasks before enqueuing shared tasks.")
    return found
