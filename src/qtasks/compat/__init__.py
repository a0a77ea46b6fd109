"""Adapters behind QTasks 1.7's import paths (``qtasks.workers``, ``qtasks.starters``,
``qtasks.logs``, the plugin classes, ...). The modules at those paths only re-export from here.

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


__all__ = ["unavailable"]
