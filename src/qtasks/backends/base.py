"""The contract between qtasks and a backend technology: two roles, and the plain values they
exchange.

A **broker** is the queue: it holds messages (an encoded envelope plus the queue name, priority
and due time), hands them out on leases, and forgets them when told they are done. A **result
store** holds the records producers read: created ``new``, marked running, written final once,
read, waited on, cancelled, listed, expired. One technology may play both roles (SQLite, Redis,
PostgreSQL); a broker-only technology (RabbitMQ, NATS, Kafka) pairs with any store.

The worker and the apps never call the roles directly. They talk to a :class:`Transport`
(async: the worker and the async app) or a :class:`Client` (blocking: the sync app), both in
``qtasks.backends.transport``, which put the two roles' calls in a safe order. A backend that
plays both roles may replace that composition with single transactions.

Delivery contract, for every broker:

- ``fetch`` leases each message it returns to one worker until its lease runs out, and gives
  that delivery a fresh fencing ``token``. A lease that runs out makes the message fetchable
  again, under a new token. ``finish``, ``start``, ``release`` and ``extend`` act only on
  deliveries whose token is still the message's current one; the others are reported back as
  rejected or lost, and change nothing.
- ``deliveries`` counts the earlier deliveries of a message that had *started* (see ``start``),
  so a message that a worker only prefetched and never ran is not counted against it. The
  broker reports the count; what it means (set aside, run alone) is decided in
  ``qtasks.core.delivery``.
- Delays and retry backoff are the broker's job: a message with an ``eta`` is not handed out
  before it, and a blocking ``fetch`` wakes up when one becomes due.
- A blocking ``fetch`` that is cancelled, or times out, never loses a message it already took:
  it keeps it for its next call, or hands it back.

Result stores write a record's final status once; a second final write for the same task, or
one from a delivery that no longer holds the task (``holder``), is rejected and reported.

Everything here is bytes/text in, text out: encoding and every decision stay in
``qtasks.core``.
"""

from __future__ import annotations

import abc
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from qtasks.core.record import RecordRow
from qtasks.core.status import FINAL_STATUSES


@dataclass(slots=True)
class NewTask:
    """A task ready to enqueue: its record's fields, and the envelope the worker will decode."""

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
    """One message handed to one worker.

    ``tag`` names the message to its broker, ``token`` this delivery of it (the fencing token).
    ``deliveries`` is how many earlier deliveries had started; ``started`` whether this one has
    been marked started.
    """

    tag: Any
    uuid: str | None
    payload: str | bytes
    deliveries: int
    priority: int
    queue: str = "default"
    token: Any = None
    started: bool = False


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
    """A task to enqueue with this outcome (the next attempt of a retried task)."""
    worker: str | None = None
    """The id of the worker that ran it: the record keeps it (``extra["worker"]``), with the
    number of this start (``extra["deliveries"]``, 1 for the first) and when the run began
    (``extra["started_at"]``, epoch seconds). None: run inline."""
    started_at: float = 0.0

    def record_extra(self) -> str | None:
        """``extra_json`` with ``worker``, ``deliveries`` and ``started_at`` in front (fields of
        the same name in ``extra_json`` win): what a store merges into the record."""
        if self.worker is None:
            return self.extra_json
        stamp = (f'"worker":{_json_text(self.worker)},'
                 f'"deliveries":{self.delivery.deliveries + 1},"started_at":{self.started_at!r}')
        extra = self.extra_json
        if not extra or extra == "{}":
            return "{" + stamp + "}"
        return "{" + stamp + "," + extra.lstrip()[1:]


@functools.lru_cache(maxsize=16)
def _json_text(text: str) -> str:
    """``text`` as a JSON string (a worker's id: one per process, encoded once)."""
    return json.dumps(text)


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


@dataclass(slots=True)
class Exchange:
    """What one worker round trip (:meth:`Transport.exchange`) gave back.

    ``deliveries``: newly fetched messages. ``refused``: deliveries the worker asked to start
    that it must not run (its lease was lost, or the task was cancelled or is already final;
    the transport has dealt with their messages). ``rejected``: outcomes not stored because the
    delivery no longer held the task (fencing). ``unstorable``: outcomes the store could not
    take as they are, with the reason; core decides what to store instead.
    """

    deliveries: list[Delivery] = field(default_factory=list)
    refused: list[Delivery] = field(default_factory=list)
    rejected: list[Outcome] = field(default_factory=list)
    unstorable: list[tuple[Outcome, str]] = field(default_factory=list)


@dataclass(slots=True)
class FinishReport:
    """A store's answer to :meth:`ResultStore.finish`."""

    rejected: list[Outcome] = field(default_factory=list)
    unstorable: list[tuple[Outcome, str]] = field(default_factory=list)


@dataclass(slots=True)
class QueueStats:
    """A broker's counts: ready and delayed messages not leased, leased ones, per queue."""

    queued: int = 0
    running: int = 0
    delayed: int = 0
    by_queue: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class StoreStats:
    """A store's counts."""

    records: int = 0
    dead_letters: int = 0
    workers: int = 0


@dataclass(slots=True)
class BackendStats:
    """Counts for ``qtasks info`` and ``stats``: ``queued`` waiting (``delayed`` of them not yet
    due), ``running`` leased to workers, ``records``, ``dead_letters``, live ``workers``, and the
    waiting tasks of each named queue (``by_queue``)."""

    queued: int = 0
    running: int = 0
    delayed: int = 0
    records: int = 0
    dead_letters: int = 0
    workers: int = 0
    by_queue: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, queue: QueueStats, store: StoreStats) -> BackendStats:
        return cls(queued=queue.queued, running=queue.running, delayed=queue.delayed,
                   records=store.records, dead_letters=store.dead_letters,
                   workers=store.workers, by_queue=dict(queue.by_queue))

    def as_dict(self) -> dict[str, Any]:
        return {"queued": self.queued, "running": self.running, "delayed": self.delayed,
                "records": self.records, "dead_letters": self.dead_letters,
                "workers": self.workers, "by_queue": dict(self.by_queue)}


@dataclass(slots=True)
class WorkerInfo:
    """What a worker reports about itself with each heartbeat."""

    id: str
    hostname: str
    pid: int
    started_at: float
    concurrency: int
    queues: tuple[str, ...] = ("default",)
    running: int = 0
    """Tasks it held at this heartbeat (running, or started and waiting for a slot)."""
    finished: int = 0
    """Tasks it has finished since it started; ``failed`` of them ended "error" or "retry",
    and they ran ``busy_seconds`` in all (the dashboard's charts difference these)."""
    failed: int = 0
    busy_seconds: float = 0.0


@dataclass(slots=True)
class WorkerRow(WorkerInfo):
    """A live worker as the store last heard of it (``SyncResultStore.workers``): what it
    reported, and when."""

    heartbeat_at: float = 0.0


Cursor = tuple[float, str]
"""Where a page of ``search`` ended: the ``(created_at, uuid)`` of its last row."""


# -- the broker role ------------------------------------------------------------------------------


class Broker(abc.ABC):
    """The queue, async side (the worker and the async app)."""

    @abc.abstractmethod
    async def enqueue(self, tasks: Sequence[NewTask]) -> None:
        """Queue one message per task (all or none where the technology allows)."""

    @abc.abstractmethod
    async def fetch(self, worker: str, queues: Sequence[str], limit: int, lease: float,
                    block: float = 0.0, start: int = 0) -> list[Delivery]:
        """Lease up to ``limit`` ready messages of ``queues``: lowest priority number first, FIFO
        within one. With none ready, wait up to ``block`` seconds for one. The first ``start``
        fetched messages that never started before are marked started in the same call."""

    @abc.abstractmethod
    async def start(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Mark deliveries started (their count goes up). Returns those whose lease was lost."""

    @abc.abstractmethod
    async def finish(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Remove finished messages. Returns the deliveries rejected: token no longer current."""

    @abc.abstractmethod
    async def release(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        """Hand messages back, to run again after ``delay`` seconds, in their own queue. A
        delivery that had started keeps its count; one that had not is not counted."""

    @abc.abstractmethod
    async def extend(self, worker: str, deliveries: Sequence[Delivery],
                     lease: float) -> list[Delivery]:
        """Extend these leases to ``lease`` seconds from now, in one call. Returns those lost."""

    @abc.abstractmethod
    async def discard(self, uuid: str) -> bool:
        """Drop the queued message of task ``uuid`` if no worker holds it (cancel). A broker that
        cannot delete by id returns False; the worker then skips the cancelled task."""

    @abc.abstractmethod
    async def stats(self) -> QueueStats: ...

    @abc.abstractmethod
    async def flush(self) -> None:
        """Drop every message of this app."""

    async def close(self) -> None:
        """Release connections."""


class SyncBroker(abc.ABC):
    """The queue, blocking side (the sync app): what a producer needs."""

    @abc.abstractmethod
    def enqueue(self, tasks: Sequence[NewTask]) -> None: ...

    @abc.abstractmethod
    def discard(self, uuid: str) -> bool: ...

    @abc.abstractmethod
    def stats(self) -> QueueStats: ...

    @abc.abstractmethod
    def flush(self) -> None: ...

    def purge(self, queue: str, limit: int) -> list[str]:
        """Drop up to ``limit`` waiting messages of ``queue`` (ready or delayed, held by no
        worker); return their task uuids. Called again until it returns fewer than ``limit``
        (an operator's ``qtasks purge``). A backend without it says so."""
        raise NotImplementedError(f"{type(self).__name__} cannot purge a queue")

    def close(self) -> None:
        """Release connections."""


# -- the result-store role ------------------------------------------------------------------------


class ResultStore(abc.ABC):
    """The records, async side."""

    @abc.abstractmethod
    async def create(self, tasks: Sequence[NewTask]) -> None:
        """Store ``new`` records."""

    @abc.abstractmethod
    async def mark_running(self, deliveries: Sequence[Delivery]) -> set[str]:
        """Mark these tasks running, held by each delivery's token. Returns the uuids that must
        not run: cancelled, or already final."""

    @abc.abstractmethod
    async def mark_queued(self, deliveries: Sequence[Delivery]) -> None:
        """Records of deliveries handed back to the queue: ``new`` again, if each delivery
        still held its task."""

    @abc.abstractmethod
    async def finish(self, outcomes: Sequence[Outcome]) -> FinishReport:
        """Write final records once, create the follow-ups' records, store dead letters. An
        outcome whose delivery no longer holds the task, or whose record is final, is
        rejected; one whose values cannot be stored is reported as unstorable, not written."""

    @abc.abstractmethod
    async def get(self, uuid: str) -> RecordRow | None: ...

    @abc.abstractmethod
    async def wait(self, uuid: str, timeout: float | None,
                   final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None:
        """The record once its status is in ``final`` (following retries); ``None`` if unknown
        or on timeout. Woken by a notification, not by polling on a fixed interval."""

    @abc.abstractmethod
    async def cancel(self, uuid: str, reason: str) -> bool:
        """Record ``cancel`` for a task that has not started. False if started, final, unknown."""

    @abc.abstractmethod
    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, newest first."""

    @abc.abstractmethod
    async def search(self, *, status: str | None = None, task_name: str | None = None,
                     limit: int = 100, before: float | None = None,
                     cursor: Cursor | None = None, queue: str | None = None) -> list[RecordRow]:
        """Records, newest first (by ``created_at``, then ``uuid``, both descending), filtered:
        only those created before ``before`` (epoch seconds), and only those after ``cursor``
        in that order, the ``(created_at, uuid)`` of the previous page's last row. Keyset
        pagination: a page costs the same on the millionth record as on the first."""

    @abc.abstractmethod
    async def heartbeat(self, info: WorkerInfo, lease: float) -> None:
        """Record that a worker is alive for another ``lease`` seconds."""

    @abc.abstractmethod
    async def unregister(self, worker: str) -> None: ...

    @abc.abstractmethod
    async def delete_finished(self, older_than: float | None = None) -> int:
        """Delete final records (finished more than ``older_than`` seconds ago); return how
        many."""

    @abc.abstractmethod
    async def stats(self) -> StoreStats: ...

    @abc.abstractmethod
    async def flush(self) -> None:
        """Delete every record and dead letter of this app."""

    async def close(self) -> None:
        """Release connections."""


class SyncResultStore(abc.ABC):
    """The records, blocking side (the sync app and the operator tools)."""

    @abc.abstractmethod
    def create(self, tasks: Sequence[NewTask]) -> None: ...

    @abc.abstractmethod
    def get(self, uuid: str) -> RecordRow | None: ...

    @abc.abstractmethod
    def wait(self, uuid: str, timeout: float | None,
             final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None: ...

    @abc.abstractmethod
    def cancel(self, uuid: str, reason: str) -> bool: ...

    @abc.abstractmethod
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    @abc.abstractmethod
    def search(self, *, status: str | None = None, task_name: str | None = None,
               limit: int = 100, before: float | None = None,
               cursor: Cursor | None = None, queue: str | None = None) -> list[RecordRow]: ...

    @abc.abstractmethod
    def live_workers(self) -> int: ...

    def dead_letter_count(self) -> int:
        """How many dead letters there are, without counting the records as ``stats`` does
        (the dashboard's overview; a backend where counting records is costly overrides it)."""
        return self.stats().dead_letters

    def workers(self) -> list[WorkerRow]:
        """The workers whose heartbeat has not expired, oldest first (the dashboard's list).
        A backend without it says so."""
        raise NotImplementedError(f"{type(self).__name__} cannot list workers")

    @abc.abstractmethod
    def stats(self) -> StoreStats: ...

    @abc.abstractmethod
    def flush(self) -> None: ...

    def delete_dead_letters(self, ids: Sequence[Any]) -> int:
        """Delete the dead letters whose ``DeadLetter.id`` is in ``ids`` (after a requeue, or
        by an operator); return how many there were. A backend without it says so."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete dead letters")

    def close(self) -> None:
        """Release connections."""


# -- a configured backend -------------------------------------------------------------------------


class Backend(abc.ABC):
    """A configured technology: factories for the roles it plays, on both sides.

    ``broker_roles()`` and ``store_roles()`` return ``(async, sync)`` pairs; a broker-only
    backend raises :class:`qtasks.exceptions.BackendError` from ``store_roles``. A backend that
    plays both roles may also return its own fused transport and client.
    """

    url: str
    stores_records: ClassVar[bool] = True
    """Whether this technology can also be the result store (then it is the default store)."""

    # QTasks' broker attributes, for code written for QTasks (docs/migration.md)
    config: Any = None
    """The ``QueueConfig`` of the app that uses it (set by the app)."""
    paired_storage: Backend | None = None
    """The result store used with it, when it is another backend (``storage=``,
    ``storage_url=``)."""

    @property
    def storage(self) -> Backend:
        """QTasks' ``broker.storage``: the result store used with it."""
        return self.paired_storage or self

    @property
    def global_config(self) -> Any:
        """QTasks' global-config store, which qtasks replaces: reading any of its attributes
        raises ``NotYetSupported``."""
        from qtasks.compat import missing

        return missing("broker.storage.global_config", "workers report through heartbeats "
                       "in the backend: app.ping(), app.client.workers(), `qtasks info`")

    @abc.abstractmethod
    def broker_roles(self) -> tuple[Broker, SyncBroker]: ...

    @abc.abstractmethod
    def store_roles(self) -> tuple[ResultStore, SyncResultStore]: ...

    def fused_transport(self) -> Any:
        """A :class:`~qtasks.backends.transport.Transport` doing both roles in single
        transactions, or ``None`` to compose the two roles."""
        return None

    def fused_client(self) -> Any:
        """Likewise for the blocking :class:`~qtasks.backends.transport.Client`."""
        return None

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for ``qtasks info``: technology and location, without secrets."""
