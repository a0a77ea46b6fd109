"""Adapters behind QTasks 1.7's import paths (``qtasks.workers``, ``qtasks.starters``,
``qtasks.logs``, the plugin classes, ...): what those modules need beyond re-exporting an
object of the real implementation lives here.

Every QTasks name either works over the qtasks mechanism that does its job, or, where qtasks
has none on purpose, exists and raises :class:`~qtasks.exceptions.NotYetSupported` on first
use, saying what to use instead (:func:`unavailable`). docs/migration.md lists them all.
"""

from __future__ import annotations

from typing import Any, NoReturn

from qtasks.exceptions import NotYetSupported


def unavailable(path: str, instead: str) -> type:
    """A class named after ``path`` whose construction (its first use) raises
    ``NotYetSupported`` saying to use ``instead``. It can still be imported, named in type
    hints and checked with ``isinstance``."""
    module, _, name = path.rpartition(".")

    def __init__(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotYetSupported(f"{path} has no qtasks equivalent: {instead} "
                              "(see docs/migration.md)")

    return type(name, (), {"__init__": __init__, "__module__": module,
                           "__doc__": f"Not in qtasks: {instead}"})


class _Missing:
    """An object whose every attribute raises ``NotYetSupported`` (see :func:`missing`)."""

    def __init__(self, path: str, instead: str) -> None:
        self._path, self._instead = path, instead

    def __getattr__(self, attr: str) -> NoReturn:
        if attr.startswith("__"):  # hasattr(), copy, inspect: an ordinary AttributeError
            raise AttributeError(attr)
        raise NotYetSupported(f"{self._path}.{attr}: {self._path} has no qtasks equivalent: "
                              f"{self._instead} (see docs/migration.md)")

    def __bool__(self) -> bool:
        # False, so that QTasks code that checks for it first (``if broker.storage.
        # global_config: ...``) takes its "none here" path; using it still raises
        return False

    def __repr__(self) -> str:
        return f"<{self._path}: not in qtasks>"


def missing(path: str, instead: str) -> Any:
    """An object standing for QTasks' ``path`` (a module or component qtasks replaces): it is
    false, and reading any attribute of it raises ``NotYetSupported`` saying to use
    ``instead``."""
    return _Missing(path, instead)


__all__ = ["missing", "unavailable"]
