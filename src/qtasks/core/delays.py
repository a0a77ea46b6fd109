"""Delayed tasks: ``add_task(..., delay=seconds)`` or ``eta=when``, and retry backoff."""

from __future__ import annotations

import math
import time
from datetime import datetime


def start_at(delay: float | None, eta: datetime | float | None) -> float | None:
    """Epoch seconds before which the task must not start, or ``None`` for "now"."""
    if delay is not None and eta is not None:
        raise ValueError("pass either delay= or eta=, not both")
    if delay is not None:
        if not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a number of seconds >= 0, got {delay!r}")
        return time.time() + delay if delay > 0 else None
    if eta is None:
        return None
    if isinstance(eta, datetime):
        if eta.tzinfo is None:
            raise ValueError("eta must be an aware datetime (with tzinfo), e.g. "
                             "datetime.now(UTC) + timedelta(minutes=5)")
        return eta.timestamp()
    if isinstance(eta, int | float) and math.isfinite(eta):
        return float(eta)
    raise ValueError(f"eta must be an aware datetime or epoch seconds, got {eta!r}")
