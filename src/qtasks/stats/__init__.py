"""Introspection: ``SyncStats(app).inspect()`` / ``await AsyncStats(app).inspect()``.

``InspectStats`` describes the app and its registered tasks as aligned text or, with
``json=True``, a JSON string (``qtasks -A mod:app stats inspect tasks json=true``).
"""

from __future__ import annotations

import dataclasses
import json as jsonlib
from typing import Any

from qtasks.core.definition import TaskDefinition

_WIDTH = 26


def _name(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_name(v) for v in value]
    if isinstance(value, dict):
        return {k: _name(v) for k, v in value.items()}
    return getattr(value, "__qualname__", None) or type(value).__name__


def _describe(definition: TaskDefinition) -> dict[str, Any]:
    data = {f.name: getattr(definition, f.name) for f in dataclasses.fields(definition)}
    data["func"] = f"{definition.func.__module__}.{definition.func.__qualname__}"
    return {k: _name(v) for k, v in data.items()}


def _text(rows: dict[str, Any]) -> str:
    return "\n".join(f"{key:<{_WIDTH}}{value}" for key, value in rows.items())


class UtilsInspectStats:
    """The formatting helpers of :class:`InspectStats`, for a stats class of one's own
    (``qtasks stats --stats-app mod:obj``)."""

    label_width = _WIDTH

    def _parser_json(self, data: Any) -> str:
        """``data`` (a definition, a dataclass, or a list of them) as indented JSON."""
        def plain(item: Any) -> Any:
            if isinstance(item, TaskDefinition):
                return _describe(item)
            if dataclasses.is_dataclass(item) and not isinstance(item, type):
                return dataclasses.asdict(item)
            return item

        items = [plain(d) for d in data] if isinstance(data, list | tuple | type({}.values())) \
            else plain(data)
        return jsonlib.dumps(items, ensure_ascii=False, indent=2, default=str)

    def _tasks_parser(self, tasks: Any) -> str:
        """Task definitions as aligned text blocks."""
        found = [_describe(t) for t in tasks]
        return "\n\n".join(_text(task) for task in found) or "No registered tasks."

    def _app_parser(self, app: Any, json: bool = False) -> str:
        """An app's description (name, flavour, backend, config, counts)."""
        return InspectStats(app).app(json=json)

    def _task_get_args_kwargs(self, func: Any) -> tuple[list[str], dict[str, Any]]:
        """A function's positional parameters (``name: type``) and keyword defaults."""
        import inspect

        args, kwargs = [], {}
        for name, param in inspect.signature(func).parameters.items():
            if param.default is inspect.Parameter.empty:
                hint = param.annotation
                args.append(name if hint is inspect.Parameter.empty
                            else f"{name}: {getattr(hint, '__name__', hint)}")
            else:
                kwargs[name] = param.default
        return args, kwargs


class InspectStats(UtilsInspectStats):
    """What ``inspect()`` returns."""

    def __init__(self, app: Any, counts: dict[str, Any] | None = None) -> None:
        self._app = app
        self._counts = counts or {}

    def app(self, json: bool = False) -> str:
        """The app: name, flavour, version, backend, config, task and router counts."""
        app = self._app
        rows = {
            "Name": app.name,
            "Method": app._flavour,
            "Version": app.version,
            "Backend": app.backend.describe(),
            "Config": {f.name: _name(getattr(app.config, f.name))
                       for f in dataclasses.fields(app.config)},
            "Tasks Count": len(app.tasks),
            "Routers Count": len(app.routers),
            "Plugins Count": sum(len(v) for v in app.plugins.values()),
            **{k.replace("_", " ").title(): v for k, v in self._counts.items()},
        }
        return jsonlib.dumps(rows, indent=2, default=str) if json else _text(rows)

    def tasks(self, *names: str, json: bool = False) -> str:
        """Registered tasks (all, or those named; unknown names are skipped)."""
        wanted = names or tuple(sorted(self._app.tasks))
        found = [_describe(self._app.tasks[n]) for n in wanted if n in self._app.tasks]
        if json:
            return jsonlib.dumps(found, indent=2, default=str)
        if not found:
            return "No registered tasks."
        return "\n\n".join(_text(task) for task in found)

    def task(self, task_name: str, json: bool = False) -> str:
        """One task; ``KeyError`` if it is not registered."""
        if task_name not in self._app.tasks:
            raise KeyError(f"task {task_name!r} is not registered in app {self._app.name!r}")
        data = _describe(self._app.tasks[task_name])
        return jsonlib.dumps(data, indent=2, default=str) if json else _text(data)


class SyncStats:
    def __init__(self, app: Any, plugins: Any = None) -> None:
        self.app = app

    def inspect(self) -> InspectStats:
        from qtasks.plugins.runner import trigger_sync

        trigger_sync(self.app._plugins, "stats_inspect", stats=self)
        return InspectStats(self.app, self.app.client.stats().as_dict())


class AsyncStats:
    def __init__(self, app: Any, plugins: Any = None) -> None:
        self.app = app

    async def inspect(self) -> InspectStats:
        from qtasks.plugins.runner import trigger_async

        await trigger_async(self.app._plugins, "stats_inspect", stats=self)
        return InspectStats(self.app, (await self.app.transport.stats()).as_dict())


__all__ = ["AsyncStats", "InspectStats", "SyncStats", "UtilsInspectStats"]
