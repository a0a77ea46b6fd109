"""Settings of the embedded SQLite backend (they live here, not in ``QueueConfig``).

Each can be given as an attribute of the app's config (``config.poll_interval_max = 0.005``) or
as ``QTASKS_SQLITE_<NAME>`` in the environment (``QTASKS_<NAME>``, the name before these moved
here, still works).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class SqliteSettings:
    poll_interval_max: float = 0.002
    """The longest pause between two checks for another process's change while work flows."""
    poll_interval_idle: float = 0.02
    """That pause once nothing has changed for a second (idle workers)."""

    @classmethod
    def from_config(cls, config: Any, environ: dict[str, str] | None = None) -> SqliteSettings:
        env = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for f in fields(cls):
            given = getattr(config, "_dynamic_fields", {}).get(f.name)
            for var in (f"QTASKS_SQLITE_{f.name.upper()}", f"QTASKS_{f.name.upper()}"):
                if given is None and var in env:
                    try:
                        given = float(env[var])
                    except ValueError:
                        raise ValueError(f"{var}={env[var]!r}: expected a number of seconds") from None
            if given is not None:
                values[f.name] = float(given)
        return cls(**values)
