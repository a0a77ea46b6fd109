"""Process-wide app bookkeeping.

``app_main`` is the most recently created app: handles bound to no app (shared tasks) enqueue to
it, as in QTasks. ``apps`` holds every live app, so a shared task can be checked for a name clash.
"""

from __future__ import annotations

import weakref
from typing import Any

app_main: Any = None
apps: weakref.WeakSet[Any] = weakref.WeakSet()
