"""What the Redis backend says to Redis, written once for the blocking and the asyncio client.

Every operation is a generator: it yields the calls it needs (``Script`` runs the backend's one
Lua script, ``Command`` a plain Redis command) and receives their replies; it returns the
operation's result. ``connection.run_sync`` and ``connection.run_async`` drive these generators
with the two redis-py clients, so no operation is written twice. Encoding the arguments and
decoding the replies, the fiddly part, is pure code here.

Arguments travel as flat text lists (no JSON or msgpack inside the script): an optional value is
``""`` when absent and ``"=" + text`` when present, so the script tells "none" from "empty".
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from qtasks.backends.base import (
    DeadLetter,
    Delivery,
    Exchange,
    FinishReport,
    NewTask,
    Outcome,
    QueueStats,
    StoreStats,
    WorkerRow,
)
from qtasks.core.record import RecordRow
from qtasks.exceptions import BackendError

_SOURCE = (Path(__file__).parent / "qtasks.lua").read_text(encoding="utf-8")
#: The library's function, named after its text: apps of two qtasks versions can share a Redis.
FUNCTION = "qtasks_" + hashlib.sha1(_SOURCE.encode("utf-8")).hexdigest()[:16]
_RETURN = "\nreturn qtasks(KEYS, ARGV)\n"
SCRIPT = _SOURCE + _RETURN  # the same code as a script (EVALSHA)
# The code is kept once, in SCRIPT (42 KB; every process that talks to Redis holds it); the
# library text is made when a Redis needs it loaded, which few processes ever do.
del _SOURCE


def library() -> str:
    """The code as the Redis Function library that defines ``FUNCTION``."""
    source = SCRIPT[:-len(_RETURN)]
    return f"#!lua name={FUNCTION}\n{source}\nredis.register_function('{FUNCTION}', qtasks)\n"


@dataclass(frozen=True, slots=True)
class Script:
    """Run the backend script with these arguments (after the prefix and the settings)."""

    args: list[Any]


@dataclass(frozen=True, slots=True)
class Scripts:
    """Run the backend script once per item of ``calls`` (operation ``op``), each call atomic
    on its own; the reply is the list of their replies. The driver sends each call as soon as
    it is encoded, so encoding the next overlaps Redis running the one before: only for
    operations that are safe to send again whole (a call whose reply is lost is resent)."""

    op: str
    calls: Iterator[list[Any]]


@dataclass(frozen=True, slots=True)
class Command:
    """Run one plain Redis command."""

    args: tuple[Any, ...]


Op = Generator[Script | Scripts | Command, Any, Any]


@dataclass(frozen=True, slots=True)
class Keys:
    """The names of one app's keys: ``<base>:{<app>}:``; the braces are the Cluster hash tag."""

    app: str
    base: str = "qtasks"

    def __post_init__(self) -> None:
        if "{" in self.app or "}" in self.app:
            raise BackendError(f"an app name used with Redis cannot contain braces: {self.app!r}")

    @property
    def prefix(self) -> str:
        return f"{self.base}:{{{self.app}}}:"

    @property
    def route(self) -> str:
        """The key each script call names, so that Cluster sends it to the app's node."""
        return self.prefix + "seq"

    def record(self, uuid: str) -> str:
        return f"{self.prefix}r:{uuid}"

    def final_channel(self, listener: str) -> str:
        """Where the final records waited for by ``listener`` are announced."""
        return f"{self.prefix}final:{listener}"

    def wake(self, queue: str) -> str:
        return f"{self.prefix}q:{queue}:wake"

    def upstream_record(self, uuid: str) -> str:
        """Where QTasks 1.7 keeps the record of ``uuid`` for an app of this name."""
        return f"{self.app}:{uuid}"


def _call_id() -> str:
    """Tells a call resent after a lost reply (same id: its writes are accepted again) from a
    new call that repeats an outcome (rejected: the record is final already). A random prefix
    per process and a count: unique without drawing random bytes each (``os.urandom`` was 8 %
    of an idle worker's py-spy samples in its calls' tasks). The pid is checked per call (one
    ``getpid``): a fork that skips Python's fork hooks (uWSGI's, by default) must not leave two
    processes counting under one prefix. The three are one tuple, read once and replaced
    whole, so that threads renewing it at once never pair one prefix with another's count."""
    calls = _CALLS
    if calls[2] != os.getpid():
        calls = _new_calls()
    return f"{calls[0]}{next(calls[1]):x}"


def _new_calls() -> tuple[str, Iterator[int], int]:
    global _CALLS
    _CALLS = (os.urandom(6).hex() + ":", itertools.count(), os.getpid())
    return _CALLS


_CALLS: tuple[str, Iterator[int], int]
_new_calls()


def _opt(value: str | None) -> str:
    return "" if value is None else "=" + value


def _ms(seconds: float) -> str:
    return repr(round(seconds * 1000.0, 3))


def _us(seconds: float) -> str:
    """A creation time as the record indexes score it (the script's ``cscore``): whole
    microseconds, rounded the same way."""
    return str(math.floor(float(seconds) * 1e6 + 0.5))


def _extras(extra_json: str | None, out: list[Any]) -> None:
    """Extra record fields, one argument pair each: name, JSON text of the value."""
    if not extra_json:
        out.append(0)
        return
    extra = json.loads(extra_json)
    out.append(len(extra))
    for key, value in extra.items():
        out.append(key)
        out.append(json.dumps(value, ensure_ascii=False))


def _task(t: NewTask, out: list[Any]) -> None:
    out += (t.uuid, t.task_name, t.priority, t.args_json, t.kwargs_json, repr(t.created_at),
            _us(t.created_at), t.queue, _ms(t.eta) if t.eta else "", t.envelope)
    _extras(t.extra_json, out)


def _text(payload: str | bytes) -> str:
    return payload if isinstance(payload, str) else payload.decode("utf-8", "replace")


def holder(d: Delivery) -> str:
    """How a record names the delivery that holds it."""
    return f"{d.tag}:{d.token}"


def _outcome(o: Outcome, out: list[Any], follow_ups: bool) -> None:
    d = o.delivery
    if (d.started and d.tag is not None and o.args_json is None and o.kwargs_json is None
            and o.traceback is None and o.extra_json is None and o.dead_letter is None
            and (o.follow_up is None or not follow_ups)):
        # the common case, in 12 arguments instead of 21 (the script knows the rest)
        out += ("c", d.tag, d.token, o.uuid, o.status, o.task_name, o.priority,
                repr(o.created_at or 0.0), _opt(o.returning_json),
                _json_text(o.worker) if o.worker else "",
                d.deliveries + 1, repr(o.started_at))
        return
    out += ("f", d.tag if d.tag is not None else "", d.token if d.token is not None else "",
            o.uuid, holder(d), "1" if d.started else "0", o.status, o.task_name, o.priority,
            _opt(o.args_json), _opt(o.kwargs_json), repr(o.created_at or 0.0),
            _opt(o.returning_json), _opt(o.traceback))
    _extras(o.record_extra(), out)
    out += (_opt(o.dead_letter), _opt(_text(d.payload) if o.dead_letter else None),
            d.deliveries)
    if follow_ups and o.follow_up is not None:
        out.append("1")
        _task(o.follow_up, out)
    else:
        out.append("0")


@functools.lru_cache(maxsize=64)
def _json_text(value: str) -> str:
    """A worker id as the JSON text the record keeps (a process has one or two)."""
    return json.dumps(value, ensure_ascii=False)


def _unstorable(o: Outcome) -> str | None:
    """Text that Redis could store but no reader could decode: a lone surrogate."""
    for text in (o.task_name, o.args_json, o.kwargs_json, o.returning_json, o.traceback,
                 o.extra_json, o.dead_letter):
        if text is not None:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                return repr(exc)
    return None


# -- replies ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _quoted(field: str) -> str:
    """An extra's hash field (``x:<name>``) as the JSON key of ``extra``: the names are few,
    and every record read (each result notice) has a few of them (``worker``, ...)."""
    return json.dumps(field[2:], ensure_ascii=False)


def record_row(uuid: str, fields: dict[str, str] | Sequence[str]) -> RecordRow | None:
    """A record hash as a ``RecordRow``; ``None`` when the hash is empty."""
    if not isinstance(fields, dict):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    if not fields or "status" not in fields:
        return None
    extras = [f"{_quoted(k)}: {v}" for k, v in fields.items() if k.startswith("x:")]
    return {
        "uuid": uuid, "task_name": fields.get("task_name", ""),
        "priority": int(fields.get("priority", 0)), "status": fields["status"],
        "args": fields.get("args", "[]"), "kwargs": fields.get("kwargs", "{}"),
        "created_at": float(fields.get("created_at", 0.0)),
        "updated_at": float(fields.get("updated_at", 0.0)),
        "returning": fields.get("returning"), "traceback": fields.get("traceback"),
        "extra": "{" + ", ".join(extras) + "}" if extras else None,
        "queue": fields.get("queue"),
    }


_UPSTREAM_FIELDS = {"task_name", "priority", "args", "kwargs", "created_at", "updated_at",
                    "status", "returning", "traceback"}


def upstream_row(uuid: str, fields: dict[str, str]) -> RecordRow | None:
    """A record written by QTasks 1.7 (hash ``<app>:<uuid>``, every value as text)."""
    if not fields or "status" not in fields:
        return None
    extra: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in _UPSTREAM_FIELDS:
            try:
                extra[key] = json.loads(value)
            except ValueError:
                extra[key] = value
    return {
        "uuid": uuid, "task_name": fields.get("task_name", ""),
        "priority": int(float(fields.get("priority") or 0)), "status": fields["status"],
        "args": fields.get("args") or "[]", "kwargs": fields.get("kwargs") or "{}",
        "created_at": float(fields.get("created_at") or 0.0),
        "updated_at": float(fields.get("updated_at") or fields.get("created_at") or 0.0),
        "returning": fields.get("returning"), "traceback": fields.get("traceback"),
        "extra": json.dumps(extra, ensure_ascii=False) if extra else None,
    }


def notice(data: str) -> tuple[str, RecordRow | None]:
    """A notice of the final-record channel: the uuid, and the record it carries (the hash's
    fields and values in turn, a JSON array)."""
    uuid, _, body = data.partition("\n")
    return uuid, (record_row(uuid, json.loads(body)) if body else None)


def new_row(uuid: str) -> RecordRow:
    """What a record just enqueued by the caller holds, as far as waiting is concerned."""
    return {"uuid": uuid, "status": "new", "extra": None}


def _deliveries(flat: Sequence[Any]) -> list[Delivery]:
    """A claim's messages, eight fields each in one flat list: id, uuid, payload, starts,
    priority, queue, token, started."""
    return [Delivery(tag=flat[i], uuid=flat[i + 1] or None, payload=flat[i + 2],
                     deliveries=int(flat[i + 3]), priority=int(flat[i + 4]), queue=flat[i + 5],
                     token=int(flat[i + 6]), started=flat[i + 7] == "1")
            for i in range(0, len(flat), 8)]


# -- operations --------------------------------------------------------------------------------------


def enqueue(tasks: Sequence[NewTask], mode: str = "F", watcher: str = "") -> Op:
    """Queue tasks: ``F`` record and message, ``M`` message only, ``R`` record only.
    ``watcher``: the id of the listener whose caller is about to wait for them, so their
    final write notifies it."""
    calls = _enqueue_calls(iter(tasks), mode, watcher)
    if len(tasks) > ENQUEUE_CHUNK:
        yield Scripts("enqueue", calls)
    elif tasks:
        yield Script(next(calls))


def enqueue_stream(tasks: Iterator[NewTask]) -> Op:
    """``enqueue`` (mode ``F``) of tasks built as the calls take them: the driver sends each
    call once encoded, so building the next batch overlaps Redis writing this one."""
    yield Scripts("enqueue", _enqueue_calls(tasks, "F", ""))


ENQUEUE_CHUNK = 50  # tasks per script call of a bulk enqueue: short calls, encoding overlapped
# (50 made a bulk enqueue about 10 % faster than 100 here, Redis itself included; 25 no better)


def _enqueue_calls(tasks: Iterator[NewTask], mode: str, watcher: str) -> Iterator[list[Any]]:
    while chunk := list(islice(tasks, ENQUEUE_CHUNK)):  # bounded script calls, each atomic
        args: list[Any] = ["enqueue", mode, watcher, len(chunk)]
        for t in chunk:
            _task(t, args)
        yield args


def exchange(worker: str, queues: Sequence[str], limit: int, lease: float,
             finished: Sequence[Outcome], started: Sequence[Delivery], start: int,
             fused: bool = True, abandon: str | None = None) -> Op:
    """One worker round trip; returns ``(Exchange, next_wake)``: seconds until a delayed
    message is due or a lease runs out (``None``: nothing pending). With ``abandon`` (a key
    under the app's prefix), the call is an idle worker's claim sent behind its blocking pop
    (``AsyncConn.run(woken=...)``): it claims nothing if that key is set when it runs."""
    result = Exchange()
    writable: list[Outcome] = []
    for o in finished:
        problem = _unstorable(o) if fused else None
        if problem is not None:
            result.unstorable.append((o, problem))
        else:
            writable.append(o)
    head: list[Any] = (["woken", abandon] if abandon is not None
                       else ["exchange" if fused else "fetch"])
    args: list[Any] = [*head, _call_id(), worker, limit, _ms(lease), start,
                       len(queues), *queues, len(writable)]
    for o in writable:
        if fused:
            _outcome(o, args, follow_ups=True)
        else:
            args += (o.delivery.tag, o.delivery.token)
    args.append(len(started))
    for d in started:
        args += (d.tag, d.token, holder(d))
    rejected, refused, flat, wake = yield Script(args)
    result.rejected = [writable[i - 1] for i in rejected]
    refused_set = {i - 1 for i in refused}
    for i, d in enumerate(started):
        if i in refused_set:
            result.refused.append(d)
        else:
            d.started = True
    result.deliveries = _deliveries(flat)
    return result, (None if wake < 0 else wake / 1000.0)


def finish_messages(deliveries: Sequence[Delivery]) -> Op:
    """The broker role's finish: returns the deliveries whose token was stale."""
    args: list[Any] = ["fetch", "", "", 0, "0", 0, 0, len(deliveries)]
    for d in deliveries:
        args += (d.tag, d.token)
    args.append(0)
    rejected, _, _, _ = yield Script(args)
    return [deliveries[i - 1] for i in rejected]


def start_messages(deliveries: Sequence[Delivery]) -> Op:
    """The broker role's start: returns the deliveries whose lease was lost."""
    args: list[Any] = ["fetch", "", "", 0, "0", 0, 0, 0, len(deliveries)]
    for d in deliveries:
        args += (d.tag, d.token, holder(d))
    _, refused, _, _ = yield Script(args)
    lost = {i - 1 for i in refused}
    for i, d in enumerate(deliveries):
        if i not in lost:
            d.started = True
    return [deliveries[i] for i in sorted(lost)]


def release(deliveries: Sequence[Delivery], delay: float, fused: bool) -> Op:
    args: list[Any] = ["release", "1" if fused else "0", _ms(delay) if delay > 0 else 0,
                       len(deliveries)]
    for d in deliveries:
        args += (d.tag, d.token, d.uuid or "", holder(d), "1" if d.started else "0")
    yield Script(args)


def extend(deliveries: Sequence[Delivery], lease: float) -> Op:
    args: list[Any] = ["extend", _ms(lease), len(deliveries)]
    for d in deliveries:
        args += (d.tag, d.token)
    lost = yield Script(args)
    return [deliveries[i - 1] for i in lost]


def heartbeat(info: Any, lease: float, deliveries: Sequence[Delivery] = ()) -> Op:
    pairs = {"hostname": info.hostname, "pid": info.pid, "started_at": repr(info.started_at),
             "concurrency": info.concurrency, "queues": ",".join(info.queues),
             "running": info.running, "finished": info.finished, "failed": info.failed,
             "busy_seconds": repr(info.busy_seconds)}
    args: list[Any] = ["heartbeat", info.id, _ms(lease), len(pairs)]
    for key, value in pairs.items():
        args += (key, value)
    args += (_ms(lease), len(deliveries))
    for d in deliveries:
        args += (d.tag, d.token)
    lost = yield Script(args)
    # Expired records, in steps short enough not to hold Redis up (the round trips also sweep
    # as they write, but an idle worker makes none): up to 50,000 per heartbeat.
    for _ in range(50):
        if (yield Script(["expire", 1000])) < 1000:
            break
    return [deliveries[i - 1] for i in lost]


def unregister(worker: str) -> Op:
    yield Script(["unregister", worker])


def live_workers() -> Op:
    """``(hostname, pid)`` of the workers whose heartbeat has not expired."""
    return [(w.hostname, w.pid) for w in (yield from workers())]


def workers() -> Op:
    """The workers whose heartbeat has not expired, as they last reported themselves."""
    flat = yield Script(["workers"])
    rows = [WorkerRow(id=flat[i], hostname=flat[i + 1], pid=int(flat[i + 2]),
                      started_at=float(flat[i + 3] or 0), heartbeat_at=float(flat[i + 4] or 0),
                      concurrency=int(flat[i + 5] or 0),
                      queues=tuple((flat[i + 6] or "default").split(",")),
                      running=int(flat[i + 7] or 0), finished=int(flat[i + 8] or 0),
                      failed=int(flat[i + 9] or 0), busy_seconds=float(flat[i + 10] or 0))
            for i in range(0, len(flat), 11)]
    return sorted(rows, key=lambda w: (w.started_at, w.id))


def mark_running(deliveries: Sequence[Delivery]) -> Op:
    held = [d for d in deliveries if d.uuid is not None]
    if not held:
        return set()
    args: list[Any] = ["mark_running", len(held)]
    for d in held:
        args += (d.uuid, holder(d))
    blocked = yield Script(args)
    return set(blocked)


def mark_queued(deliveries: Sequence[Delivery]) -> Op:
    held = [d for d in deliveries if d.uuid is not None]
    if held:
        args: list[Any] = ["mark_queued", len(held)]
        for d in held:
            args += (d.uuid, holder(d))
        yield Script(args)


def finish_records(outcomes: Sequence[Outcome]) -> Op:
    """The store role's finish: fenced by each record's holder."""
    report = FinishReport()
    writable = []
    for o in outcomes:
        problem = _unstorable(o)
        if problem is not None:
            report.unstorable.append((o, problem))
        else:
            writable.append(o)
    if writable:
        args: list[Any] = ["finish", _call_id(), len(writable)]
        for o in writable:
            _outcome(o, args, follow_ups=False)
        rejected = yield Script(args)
        report.rejected = [writable[i - 1] for i in rejected]
    return report


def get(keys: Keys, uuid: str) -> Op:
    fields = yield Command(("HGETALL", keys.record(uuid)))
    row = record_row(uuid, fields)
    if row is None:  # perhaps a record that QTasks 1.7 wrote
        fields = yield Command(("HGETALL", keys.upstream_record(uuid)))
        row = upstream_row(uuid, fields)
    return row


def watch(keys: Keys, uuid: str, listener: str) -> Op:
    """Read a record and ask its final write to notify ``keys.final_channel(listener)``."""
    fields = yield Script(["watch", uuid, listener])
    if fields:
        return record_row(uuid, fields)
    return (yield from get(keys, uuid))


def cancel(uuid: str, reason: str, fused: bool) -> Op:
    done = yield Script(["cancel", "1" if fused else "0", uuid,
                         json.dumps(reason, ensure_ascii=False)])
    return bool(done)


def discard(uuid: str) -> Op:
    return bool((yield Script(["discard", uuid])))


def delete_finished(older_than: float | None) -> Op:
    """Final records finished more than ``older_than`` seconds ago (all when ``None``)."""
    total = 0
    while True:
        age = "" if older_than is None else _ms(older_than)
        gone, seen = yield Script(["delete_finished", age, 2000])
        total += gone
        if seen < 2000 or not gone:
            return total


def stats() -> Op:
    """``(QueueStats, StoreStats without workers)``."""
    per_queue, records, letters = yield Script(["stats"])
    queue = QueueStats()
    for i in range(0, len(per_queue), 4):
        name, ready, delayed, leased = per_queue[i:i + 4]
        queue.queued += ready + delayed
        queue.delayed += delayed
        queue.running += leased
        if ready + delayed:
            queue.by_queue[name] = ready + delayed
    queue.by_queue = dict(sorted(queue.by_queue.items()))
    return queue, StoreStats(records=records, dead_letters=letters)


def dead_letters(keys: Keys, limit: int) -> Op:
    entries = yield Command(("XREVRANGE", keys.prefix + "dead", "+", "-", "COUNT", limit))
    out = []
    for entry_id, fields in entries:
        out.append(DeadLetter(
            id=entry_id, uuid=fields.get("uuid") or None, task_name=fields.get("task_name"),
            reason=fields.get("reason", ""), payload=fields.get("payload"),
            deliveries=int(fields.get("deliveries", 0)),
            created_at=float(fields.get("created_at", 0.0))))
    return out


def purge(queue: str, limit: int) -> Op:
    """Up to ``limit`` waiting messages of ``queue``, dropped: their uuids."""
    return (yield Script(["purge", queue, limit]))


def delete_dead_letters(keys: Keys, ids: Sequence[Any]) -> Op:
    gone = 0
    for start in range(0, len(ids), 1000):
        gone += yield Command(("XDEL", keys.prefix + "dead", *ids[start:start + 1000]))
    return gone


def search(status: str | None, task_name: str | None, limit: int,
           before: float | None, cursor: tuple[float, str] | None = None,
           queue: str | None = None) -> Op:
    after_created, after_uuid = (_us(cursor[0]), cursor[1]) if cursor else ("", "")
    flat = yield Script(["search", status or "", task_name or "", limit,
                         _us(before) if before is not None else "", after_created, after_uuid,
                         queue or ""])
    rows = (record_row(flat[i], flat[i + 1]) for i in range(0, len(flat), 2))
    return [r for r in rows if r is not None]


def flush(what: str) -> Op:
    """Delete this app's messages (``Q``), records (``S``) or both (``A``), in bounded steps."""
    while not (yield Script(["flush", what, 5000])):
        pass
