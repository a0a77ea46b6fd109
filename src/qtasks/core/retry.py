"""When to retry a failed task, and how long to wait first.

``retry=N`` gives ``1 + N`` attempts. ``retry_on_exc`` limits retries to those exception classes
and their subclasses (QTasks matched exact types only). ``retry_delay`` is either a number of
seconds, the base of an exponential backoff with jitter (attempt k waits a random time between
half and all of ``base * 2**k``, at most ``MAX_DELAY``), or a function ``attempt -> seconds``.
"""

from __future__ import annotations

import random

from qtasks.core.definition import TaskDefinition

MAX_DELAY = 3600.0


def remaining_attempts(definition: TaskDefinition, from_message: int | None) -> int:
    """Retries left: the count carried by a retry message, else the task's ``retry``."""
    if from_message is not None:
        return from_message
    return definition.retry or 0


def should_retry(definition: TaskDefinition, remaining: int, exc: BaseException) -> bool:
    if remaining <= 0 or not isinstance(exc, Exception):
        return False
    kinds = definition.retry_on_exc
    return not kinds or isinstance(exc, tuple(kinds))


def retry_delay(definition: TaskDefinition, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
    delay = definition.retry_delay
    if delay is None:
        return 0.0
    if callable(delay):
        return max(0.0, float(delay(attempt)))
    ceiling = min(float(delay) * (2**attempt), MAX_DELAY)
    return (rng or random).uniform(ceiling / 2, ceiling)
