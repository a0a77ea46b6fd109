"""What an operator reads from the queue and does to it, on any backend: the ``qtasks tasks``
and ``qtasks queues`` commands use it (and the dashboard and the Django admin will).

Everything goes through the app's blocking client (``app.client``), so it works the same for
the sync and the async app, and on every backend the contract covers. Values come back as plain
data (dicts of JSON values) ready to print as a table or as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from qtasks.core.record import Task, record_from_row
from qtasks.core.status import FINAL_STATUSES

if TYPE_CHECKING:
    from qtasks.app import BaseQueueTasks

STATUSES = ("new", "process", "success", "error", "cancel")


def when(value: datetime | float | None) -> str | None:
    """An ISO 8601 UTC time, to the second."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(value, tz=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


def parse_when(text: str) -> float:
    """``--before``: epoch seconds, or an ISO 8601 time (UTC unless it names a zone)."""
    try:
        return float(text)
    except ValueError:
        pass  # not a number: read it as an ISO time below
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (give epoch seconds or an ISO time such as "
                         "2026-12-06T10:00:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def task_summary(task: Task) -> dict[str, Any]:
    """One row of ``qtasks tasks list``."""
    return {"uuid": str(task.uuid), "task_name": task.task_name, "status": task.status,
            "queue": task.queue, "priority": task.priority, "created_at": when(task.created_at),
            "updated_at": when(task.updated_at)}


def task_detail(task: Task) -> dict[str, Any]:
    """Everything a record holds (``qtasks tasks show``)."""
    detail = task_summary(task)
    detail.update(
        args=list(task.args), kwargs=task.kwargs, returning=task.returning,
        traceback=task.traceback, retry=task.retry,
        retry_parent_uuid=str(task.retry_parent_uuid) if task.retry_parent_uuid else None,
        retry_child_uuid=str(task.retry_child_uuid) if task.retry_child_uuid else None,
        extra=task.extra)
    started = task.extra.get("started_at")
    if isinstance(started, int | float) and started > 0:  # a worker ran it (not inline)
        created, updated = task.created_at.timestamp(), task.updated_at.timestamp()
        detail.update(started_at=when(started), waited_seconds=round(started - created, 6))
        if task.status in FINAL_STATUSES or task.status == "retry":
            detail["ran_seconds"] = round(max(0.0, updated - started), 6)
    return detail


def list_tasks(app: BaseQueueTasks, *, status: str | None = None, task_name: str | None = None,
               limit: int = 20, before: float | None = None,
               after: str | None = None, queue: str | None = None) -> list[Task]:
    """Records, newest first, created before ``before`` (epoch seconds) if given. ``after``,
    the uuid of the previous page's last row, gives the next page (a keyset on creation time
    and uuid: tasks created in one bulk call, which share a time, are not skipped)."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}: one of {', '.join(STATUSES)}")
    if limit < 1:
        raise ValueError("the limit must be at least 1")
    cursor = None
    if after is not None:
        row = app.client.get(_uuid(after))
        if row is None:
            raise ValueError(f"no task {after} to page after (its record may have expired)")
        cursor = (float(row["created_at"]), row["uuid"])
    rows = app.client.search(status=status, task_name=task_name, limit=limit, before=before,
                             cursor=cursor, queue=queue)
    return [record_from_row(row, app) for row in rows]


def find_task(app: BaseQueueTasks, uuid: str) -> Task | None:
    """The record of ``uuid``; ``ValueError`` if ``uuid`` is not one."""
    row = app.client.get(_uuid(uuid))
    return None if row is None else record_from_row(row, app)


@dataclass
class CancelResult:
    cancelled: bool
    status: str | None  # the record's status after the attempt (None: no such task)

    @property
    def reason(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.status is None:
            return "no such task"
        if self.status in FINAL_STATUSES:
            return f"already final ({self.status})"
        return f"a worker has started it ({self.status})"


def cancel_task(app: BaseQueueTasks, uuid: str, reason: str = "") -> CancelResult:
    """Cancel a task no worker has started (as ``app.cancel``), saying why not if it cannot."""
    task = find_task(app, uuid)
    if task is None:
        return CancelResult(False, None)
    done = app.client.cancel(str(task.uuid), reason or "cancelled by an operator")
    after = find_task(app, uuid)
    return CancelResult(done, after.status if after is not None else None)


def queue_rows(app: BaseQueueTasks) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``qtasks queues``: the waiting tasks of each queue, and the totals of the backend
    (waiting, of them delayed, claimed by workers, records, dead letters, live workers)."""
    counts = app.client.stats().as_dict()
    return _queue_table(app, counts.pop("by_queue", None) or {}), counts


def _queue_table(app: BaseQueueTasks, by_queue: dict[str, int]) -> list[dict[str, Any]]:
    """One row per queue with waiting tasks, and per queue the app's workers serve."""
    waiting = dict(by_queue)
    for name in app.config.worker_queues:
        waiting.setdefault(name, 0)
    return [{"queue": name, "waiting": n} for name, n in sorted(waiting.items())]


def overview(app: BaseQueueTasks) -> tuple[list[dict[str, Any]], dict[str, Any], list[Any]]:
    """The dashboard's counts, without counting records (costly on a large store): each
    queue's waiting tasks; waiting, delayed, claimed, dead letters and live workers; and the
    live workers themselves."""
    client = app.client
    queue = client.queue_stats()
    workers = client.workers()
    totals = {"queued": queue.queued, "running": queue.running, "delayed": queue.delayed,
              "dead_letters": client.dead_letter_count(), "workers": len(workers)}
    return _queue_table(app, queue.by_queue), totals, workers


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as an aligned text table with a header; empty cells as ``-``."""
    cells = [[("-" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


RETRYABLE = ("error", "cancel")


def retry_task(app: BaseQueueTasks, uuid: str) -> Task:
    """Run a failed or cancelled task again: a new task with the same name, arguments and
    priority, in its task's queue, whose ``retry_parent_uuid`` names the old one. The old
    record keeps its final status (a record reaches one final status, once)."""
    old = find_task(app, uuid)
    if old is None:
        raise LookupError(f"no task {uuid}")
    if old.status not in RETRYABLE:
        raise ValueError(f"task {old.uuid} is {old.status!r}: only a failed or cancelled task "
                         "can be retried")
    new = app._prepare(old.task_name, old.args, old.kwargs, old.priority,
                       extra={"retry_parent_uuid": str(old.uuid)})
    app.client.enqueue([new])
    return app._new_record(new, old.args, old.kwargs)


class Progress:
    """Counts for a long operation: a bar on a terminal, a plain line now and then when the
    output is piped (``out`` is the stream, stderr for the commands)."""

    def __init__(self, label: str, total: int | None, out: Any, every: int = 1000) -> None:
        self.label, self.total, self.out, self.every = label, total, out, every
        self.done = 0
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._shown = 0

    def advance(self, n: int) -> None:
        self.done += n
        if self.tty:
            self._bar()
        elif self.done - self._shown >= self.every:
            self._line()

    def finish(self) -> None:
        if self.tty:
            self._bar()
            self.out.write("\n")
        elif self.done != self._shown:
            self._line()
        self.out.flush()

    def _line(self) -> None:
        of = f"/{self.total:,}" if self.total else ""
        self.out.write(f"{self.label}: {self.done:,}{of}\n")
        self.out.flush()
        self._shown = self.done

    def _bar(self) -> None:
        total = max(self.total or 0, self.done)
        filled = int(30 * self.done / total) if total else 30
        self.out.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] "
                       f"{self.done:,}/{total:,}")
        self.out.flush()


def _quiet(n: int) -> None:
    return None


@dataclass
class Requeued:
    """What ``requeue_dead_letters`` did: (dead-letter uuid, new task uuid) pairs, and the
    dead letters it left, with why."""

    requeued: list[tuple[str, str]]
    skipped: list[tuple[str, str]]


def requeue_dead_letters(app: BaseQueueTasks, uuids: list[str] | None = None,
                         progress: Any = _quiet, batch: int = 500) -> Requeued:
    """Run dead-lettered tasks again (all of them when ``uuids`` is None): each becomes a new
    task built from its record, as ``retry_task`` builds one, and its dead letter is deleted.
    A dead letter whose record is gone, or not failed, stays, and is reported."""
    wanted = None if uuids is None else {_uuid(u) for u in uuids}
    done: list[tuple[str, str]] = []
    skipped: dict[Any, tuple[str, str]] = {}
    while True:
        # newest first; named ones may be anywhere, so then every dead letter is looked at
        limit = len(skipped) + batch if wanted is None else _all_letters(app)
        page = [d for d in app.client.dead_letters(limit)
                if d.id not in skipped and (wanted is None or d.uuid in wanted)]
        if not page:
            break
        taken = []
        for letter in page:
            try:
                if letter.uuid is None:
                    raise LookupError("it names no task")
                new = retry_task(app, letter.uuid)
            except (LookupError, ValueError) as exc:
                skipped[letter.id] = (letter.uuid or str(letter.id), str(exc))
                continue
            done.append((letter.uuid, str(new.uuid)))
            taken.append(letter.id)
        if taken:
            app.client.delete_dead_letters(taken)
        progress(len(taken))
        if wanted is not None and not taken:
            break
    if wanted is not None:
        found = {old for old, _ in done} | {u for u, _ in skipped.values()}
        for uuid in sorted(wanted - found):
            skipped[uuid] = (uuid, "no dead letter of this task")
    return Requeued(done, list(skipped.values()))


def delete_dead_letters(app: BaseQueueTasks, uuids: list[str] | None = None,
                        progress: Any = _quiet, batch: int = 500) -> int:
    """Delete dead letters (all of them when ``uuids`` is None) without running them."""
    wanted = None if uuids is None else {_uuid(u) for u in uuids}
    gone = 0
    while True:
        limit = batch if wanted is None else _all_letters(app)
        page = [d.id for d in app.client.dead_letters(limit)
                if wanted is None or d.uuid in wanted]
        if not page:
            return gone
        n = app.client.delete_dead_letters(page)
        gone += n
        progress(n)
        if wanted is not None or n == 0:
            return gone


def _uuid(text: str) -> str:
    try:
        return str(UUID(text))
    except ValueError:
        raise ValueError(f"not a task id: {text!r}") from None


def _all_letters(app: BaseQueueTasks) -> int:
    return app.client.stats().dead_letters + 1


def waiting_in(app: BaseQueueTasks, queue: str) -> int:
    return app.client.stats().by_queue.get(queue, 0)


def purge_queue(app: BaseQueueTasks, queue: str, progress: Any = _quiet,
                batch: int = 500) -> list[str]:
    """Drop every waiting task of ``queue`` (not those workers hold) and record each as
    cancelled, so that nobody waits on it; their uuids."""
    gone: list[str] = []
    while True:
        uuids = app.client.purge(queue, batch, f"purged from queue {queue!r} by an operator")
        gone += uuids
        progress(len(uuids))
        if len(uuids) < batch:
            return gone
