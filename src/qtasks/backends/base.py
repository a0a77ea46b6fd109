"""The contract between qtasks and a backend technology.

A backend gives the worker and the async app an :class:`AsyncTransport`, and the sync app a
:class:`SyncClient` built on the technology's native sync driver. Both speak in the plain values
below: encoded text in, encoded text out; codecs and decisions stay in ``qtasks.core``.

Delivery contract (every backend): a claimed message is leased to one worker until
``lease_until``; it leaves the queue only when its outcome is recorded (the ``finished``
argument of :meth:`AsyncTransport.claim`). A lease that expires (worker died) makes the message
claimable again, its delivery count going up; a message whose count has reached
``max_deliveries`` is instead recorded as ``error`` ("worker lost") and dead-lettered. A
record's final status is written once: a second outcome for the same task does not change it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

from qtasks.core.record import RecordRow
from qtasks.core.status import FINAL_STATUSES


@dataclass(slots=True)
class NewTask:
    """A task ready to enqueue: record fields plus the envelope the worker will decode."""

    uuid: str
    task_name: str
    priority: int
    args_json: str
    kwargs_json: str
    created_at: float
    envelope: str
    eta: float | None = None
    """Epoch seconds before which no worker may start it (delayed tasks, retry backoff)."""
    queue: str = "default"
    extra_json: str | None = None
    """Extra record fields at creation (a retry's ``retry`` and ``retry_parent_uuid``)."""
    uuid_obj: Any = None  # the UUID object itself, kept to build the returned record cheaply


@dataclass(slots=True)
class Delivery:
    """One claimed message. ``tag`` identifies it to the backend; ``payload`` is undecoded."""

    tag: Any
    uuid: str | None
    payload: str | bytes
    deliveries: int
    priority: int


@dataclass(slots=True)
class Outcome:
    """The final record of one delivery, and the dead-letter reason when it must be set aside."""

    delivery: Delivery
    uuid: str
    status: str
    task_name: str
    priority: int
    args_json: str | None = None  # None: the record exists already, keep its arguments
    kwargs_json: str | None = None
    created_at: float = 0.0
    returning_json: str | None = None
    traceback: str | None = None
    extra_json: str | None = None
    """Extra record fields, merged into those the record has."""
    dead_letter: str | None = None
    follow_up: NewTask | None = None
    """A task to enqueue in the same transaction (the next attempt of a retried task)."""


@dataclass(slots=True)
class DeadLetter:
    """A message set aside: never run to success, kept for a person to look at."""

    id: Any
    uuid: str | None
    task_name: str | None
    reason: str
    payload: str | None
    deliveries: int
    created_at: float


class SyncClient(abc.ABC):
    """Producer-side operations for the sync app, on the technology's sync driver."""

    @abc.abstractmethod
    def enqueue(self, task: NewTask) -> None:
        """Store the ``new`` record and queue the message, atomically where the store allows."""

    @abc.abstractmethod
    def get(self, uuid: str) -> RecordRow | None:
        """The stored record, or ``None``."""

    @abc.abstractmethod
    def wait(self, uuid: str, timeout: float | None,
             final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None:
        """The record once its status is in ``final``; ``None`` if unknown or on timeout."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Delete every record, message and dead letter of this app."""

    @abc.abstractmethod
    def ping(self) -> bool:
        """Whether a worker of this app has reported itself alive recently."""

    @abc.abstractmethod
    def cancel(self, uuid: str, reason: str) -> bool:
        """Cancel a task that no worker has started: record ``cancel``, drop the message."""

    @abc.abstractmethod
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Dead-lettered messages, newest first."""

    @abc.abstractmethod
    def stats(self) -> dict[str, Any]:
        """Counts for ``qtasks info``: queued, leased, dead letters, live workers, and the
        waiting tasks of each named queue (``by_queue``)."""

    def close(self) -> None:
        """Release connections."""


class AsyncTransport(abc.ABC):
    """Worker- and async-app-side operations."""

    @abc.abstractmethod
    async def enqueue(self, task: NewTask) -> None: ...

    @abc.abstractmethod
    async def get(self, uuid: str) -> RecordRow | None: ...

    @abc.abstractmethod
    async def wait(self, uuid: str, timeout: float | None,
                   final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None: ...

    @abc.abstractmethod
    async def flush(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> bool: ...

    @abc.abstractmethod
    async def claim(self, worker_id: str, limit: int, lease: float,
                    finished: list[Outcome] | tuple[()] = (),
                    queues: tuple[str, ...] = ("default",)) -> list[Delivery]:
        """Record ``finished`` outcomes, then lease up to ``limit`` ready messages of ``queues``.

        Outcomes: final records written once, messages removed, dead letters stored for those
        that ask for it. Claiming: lowest priority number first, FIFO within one priority. One
        round trip where the technology allows, so a busy worker pays one per batch.
        """

    @abc.abstractmethod
    async def wait_for_work(self, timeout: float) -> None:
        """Return when new work may be ready, or after ``timeout`` seconds."""

    @abc.abstractmethod
    async def stats(self) -> dict[str, Any]:
        """Counts for introspection, as ``SyncClient.stats``."""

    @abc.abstractmethod
    async def next_due(self, queues: tuple[str, ...] = ("default",)) -> float | None:
        """Epoch seconds at which the earliest delayed message of ``queues`` becomes ready."""

    @abc.abstractmethod
    async def cancel(self, uuid: str, reason: str) -> bool:
        """Cancel a task that no worker has started: record ``cancel``, drop the message."""

    @abc.abstractmethod
    async def release(self, worker_id: str, deliveries: list[Delivery], counted: bool) -> None:
        """Hand messages back to the queue now; ``counted=False`` if they never started."""

    @abc.abstractmethod
    async def heartbeat(self, worker_id: str, lease: float, info: dict[str, Any]) -> None:
        """Extend every lease this worker holds and record that it is alive."""

    @abc.abstractmethod
    async def unregister(self, worker_id: str) -> None:
        """Forget a worker that stops cleanly."""

    @abc.abstractmethod
    async def delete_finished(self) -> int:
        """Delete records in a final status; return how many."""

    async def close(self) -> None:
        """Release connections."""


class Backend(abc.ABC):
    """A configured backend: where tasks live, and factories for both kinds of client."""

    url: str

    @abc.abstractmethod
    def sync_client(self) -> SyncClient: ...

    @abc.abstractmethod
    def async_transport(self) -> AsyncTransport: ...

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for ``qtasks info``: technology and location, without secrets."""
