"""What a worker does with a delivery, decided from the facts its broker reports.

A broker counts only the deliveries of a message that *started* (``deliveries``). A message that
comes back with a count above zero was running when its worker stopped without finishing it:
the worker died, was killed, or was stopped hard. One of the tasks that worker was running may
have killed it; the others are innocent. So such a message runs **alone** (quarantine): its
worker starts nothing else until it ends. If it is the culprit, it can only take itself down,
and after ``max_deliveries`` starts it is set aside without running again. Innocent tasks that
shared the dead worker pass their quarantine run and finish normally, whatever the limit.
"""

from __future__ import annotations

from enum import Enum

from qtasks.exceptions import ResultStorageError, StaleDeliveryError, WorkerLostError


class Verdict(Enum):
    RUN = "run"
    QUARANTINE = "quarantine"  # run alone: nothing else runs in this worker meanwhile
    SET_ASIDE = "set_aside"  # record WorkerLostError, dead-letter, never run again


def verdict(deliveries: int, max_deliveries: int) -> Verdict:
    """``deliveries`` is how many earlier deliveries of the message had started."""
    if deliveries <= 0:
        return Verdict.RUN
    if deliveries >= max(1, max_deliveries):
        return Verdict.SET_ASIDE
    return Verdict.QUARANTINE


def class_path(cls: type) -> str:
    """``qtasks.exceptions.WorkerLostError``: how records name an exception class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def worker_lost_reason(deliveries: int, max_deliveries: int) -> str:
    return (f"{WorkerLostError.__name__}: the worker running this task stopped without finishing "
            f"it {deliveries} times (max_deliveries={max_deliveries}); set aside")


def unstorable_reason(problem: str) -> str:
    return f"{ResultStorageError.__name__}: the outcome could not be stored: {problem}"


def stale_reason(task_name: str, uuid: str | None) -> str:
    return (f"{StaleDeliveryError.__name__}: the outcome of {task_name} ({uuid}) was not stored: "
            "this worker's lease had run out and another worker took the task over")
