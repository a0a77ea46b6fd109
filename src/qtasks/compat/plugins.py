"""QTasks' built-in plugin classes.

QTasks installs retries, pydantic arguments, ``Depends`` and states as plugins on every
worker. In qtasks they are part of the worker itself (``qtasks.core.retry``,
``qtasks.core.injection``), always on, so these classes exist for code that names or adds
them: adding one changes nothing, and says so once in the log. The test plugin does its job:
records of tasks declared with ``test=...`` get an ``is_testing`` field.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from qtasks.backends.base import Outcome
from qtasks.core.codec import dumps, loads
from qtasks.plugins.base import BasePlugin

log = logging.getLogger("qtasks.plugins")


_told: set[type] = set()


class _BuiltIn(BasePlugin):
    """A QTasks plugin whose job the qtasks worker does itself."""

    feature = ""

    def __init__(self, name: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(name or type(self).__name__)
        if type(self) not in _told:  # once per class and process
            _told.add(type(self))
            log.info("%s: %s are built into the qtasks worker and always on; this plugin "
                     "adds nothing (see docs/migration.md)", type(self).__name__, self.feature)

    def trigger(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


class AsyncRetryPlugin(_BuiltIn):
    feature = "retries (retry=, retry_on_exc=)"


class SyncRetryPlugin(AsyncRetryPlugin):
    pass


class AsyncPydanticWrapperPlugin(_BuiltIn):
    feature = "pydantic model arguments and results"


class SyncPydanticWrapperPlugin(AsyncPydanticWrapperPlugin):
    pass


class AsyncDependsPlugin(_BuiltIn):
    feature = "Depends() dependencies"


class SyncDependsPlugin(AsyncDependsPlugin):
    pass


class AsyncStatePlugin(_BuiltIn):
    feature = "AsyncState / SyncState parameters"

    def __init__(self, name: str | None = None, accept_annotated: bool = True) -> None:
        super().__init__(name)


class SyncStatePlugin(AsyncStatePlugin):
    pass


class AsyncTestPlugin(BasePlugin):
    """Marks the records of tasks declared with ``test=<value>``: their final record gets the
    field ``is_testing`` (``str(value)``). Add it with
    ``app.add_plugin(AsyncTestPlugin(), ["worker_execute_before",
    "worker_remove_finished_task"], component="worker")``."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name or type(self).__name__)
        self.handlers = {"worker_remove_finished_task": self.worker_remove_finished_task}

    def worker_remove_finished_task(self, task_func: Any = None, model: Any = None,
                                    **kwargs: Any) -> dict[str, Any] | None:
        marker = (getattr(task_func, "extra", None) or {}).get("test")
        if not marker or not isinstance(model, Outcome):
            return None
        extra = loads(model.extra_json) if model.extra_json else {}
        extra["is_testing"] = str(marker)
        return {"model": dataclasses.replace(model, extra_json=dumps(extra))}


class SyncTestPlugin(AsyncTestPlugin):
    pass


__all__ = [
    "AsyncDependsPlugin", "AsyncPydanticWrapperPlugin", "AsyncRetryPlugin", "AsyncStatePlugin",
    "AsyncTestPlugin", "SyncDependsPlugin", "SyncPydanticWrapperPlugin", "SyncRetryPlugin",
    "SyncStatePlugin", "SyncTestPlugin",
]
