"""The most recently created app, used by handles that were not bound to one (``shared_task``)."""

from __future__ import annotations

from typing import Any

app_main: Any = None
