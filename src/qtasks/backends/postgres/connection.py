"""Connections for the PostgreSQL backend: the URL and its options, the two drivers that run
``sql`` operations (blocking and asyncio), and the listeners that turn ``NOTIFY`` into wake-ups.

An operation is a generator of ``(statement, parameters)`` steps (``sql.Steps``); a driver runs
each step and sends back its rows, so both flavours share every statement and every decision.
Connections are in autocommit: each statement is its own transaction unless an operation says
otherwise. A statement that fails on a value (``DataError``: a NUL character, text that is not
JSON) is thrown back into the operation as :class:`sql.Careful`; a connection that fails is
dropped and reported as :class:`BackendConnectionError`, and the next call opens another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors

from qtasks.backends.postgres import sql as q
from qtasks.backends.urls import redact
from qtasks.exceptions import BackendConnectionError, BackendError

T = TypeVar("T")
log = logging.getLogger("qtasks.backends.postgres")

DAY = 86400.0
_OURS = ("schema", "result_ttl", "dead_letter_ttl", "pool_size", "vacuum")


@dataclass
class Settings:
    """What a ``postgresql://`` URL says: libpq's part, and qtasks' own options.

    qtasks' options are removed before the URL reaches libpq: ``schema`` (where the tables are,
    default ``qtasks``), ``result_ttl`` (seconds a final record is kept, default one day, ``0``
    keeps them), ``dead_letter_ttl`` (default seven days), ``pool_size`` (connections per event
    loop for the async side, default 8), ``vacuum`` (``0``: workers never run ``VACUUM`` or
    ``ANALYZE`` on the qtasks tables themselves; see ``PostgresBackend.maintain_op``).
    Everything else (``sslmode``, ``sslrootcert``, ``connect_timeout``, ``application_name``
    ...) is libpq's.
    """

    conninfo: str = field(repr=False)  # with the password: ``shown`` is the redacted URL
    shown: str
    schema: str = "qtasks"
    result_ttl: float = DAY
    dead_letter_ttl: float = 7 * DAY
    pool_size: int = 8
    vacuum: bool = True
    sql: q.Sql = field(init=False)

    def __post_init__(self) -> None:
        self.sql = q.Sql(self.schema)


def parse_url(url: str) -> Settings:
    shown = redact(url)
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise BackendError(f"not a PostgreSQL URL: {shown!r}; write postgresql://user@host/db")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    ours = {k: options.pop(k) for k in _OURS if k in options}
    options.setdefault("connect_timeout", "5")
    options.setdefault("application_name", "qtasks")
    # percent-encoded, never '+' for a space: libpq does not read '+' as one (options=-c x=y)
    conninfo = urlunsplit(parts._replace(query=urlencode(options, quote_via=quote)))
    schema = ours.get("schema", "qtasks")
    if not q.SCHEMA_NAME.match(schema):
        raise BackendError(f"schema {schema!r} in {shown!r}: use lower-case letters, digits and "
                           "underscores, 40 characters at most, not starting with a digit")

    def number(name: str, default: float) -> float:
        try:
            value = float(ours.get(name, default))
        except ValueError:
            raise BackendError(f"{name} in {shown!r} must be a number of seconds") from None
        if value < 0:
            raise BackendError(f"{name} in {shown!r} must not be negative")
        return value

    return Settings(conninfo=conninfo, shown=shown, schema=schema,
                    result_ttl=number("result_ttl", DAY),
                    dead_letter_ttl=number("dead_letter_ttl", 7 * DAY),
                    pool_size=max(1, int(number("pool_size", 8))),
                    vacuum=ours.get("vacuum", "1").lower() not in ("0", "false", "no", "off"))


def _has_rows(cursor: Any) -> bool:
    """Whether the statement returned columns to fetch: what a non-empty
    ``cursor.description`` says, without building its column objects at every statement
    (a caller's cursor that is not psycopg's own, such as Django's, is asked for its
    description)."""
    try:
        result = cursor.pgresult
    except AttributeError:
        return bool(cursor.description)
    return result is not None and result.nfields > 0


def _stale(conn: Any) -> bool:
    """Whether an idle connection is already dead: closed, or with something to read while it
    waits for nothing (the server's goodbye after a restart or ``pg_terminate_backend``).
    Such a connection is replaced before use, so one dropped while idle costs no call."""
    if conn.closed or conn.broken:
        return True
    poller = select.poll()  # not select.select: it fails on descriptors over 1023
    try:
        poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


# psycopg prepares a statement after a few uses, and PostgreSQL then still plans each execution
# again unless it judges its generic plan no costlier than the plans made for the values; for
# the worker's exchange it never did, and planning that statement took longer than running it
# (docs/architecture.md). On our own connections the generic plan is forced, and only the
# statements whose plan does not depend on their values are prepared (``_prepare``). A
# caller's connection (``enqueue_in``, Django) keeps its own setting.
GENERIC_PLANS = "SET plan_cache_mode = force_generic_plan"


def _no_generic_plans(exc: Exception) -> None:
    """PostgreSQL before 12 has no ``plan_cache_mode`` (and a server that only speaks its
    protocol may refuse it): the server's own choice of plans stands."""
    log.info("the server refused %r (%s); it chooses its statement plans itself",
             GENERIC_PLANS, exc)


def _prepare(text: str) -> bool | None:
    """On our own connections, psycopg prepares a statement after a few uses if its plan
    does not depend on its values (``sql.GENERIC``); the others are planned at each call."""
    return None if text in q.GENERIC else False


def _raw(step: tuple[str, dict[str, Any]]) -> tuple[str, list[Any]]:
    """A step for a raw cursor (on our own connections): ``$n`` placeholders, values by
    position."""
    text, names = q.positional(step[0])
    return text, [step[1][name] for name in names]


def _retry(exc: BaseException, first: bool, reused: bool, conn: Any) -> bool:
    """Whether a failed statement may be sent again on a new connection: the operation's first
    statement, on a connection that sat idle since an earlier call, which the server ended
    (a restart or ``pg_terminate_backend`` racing with the idle check in ``_stale``): the
    server's goodbye came instead of an answer, so the statement never ran, and nothing of the
    operation came before. Any other failure (a connection lost after a commit, before its
    reply) is not retried: the statement may have run."""
    return first and reused and isinstance(exc, errors.AdminShutdown)


class _Stepper:
    """The step protocol of an operation, written once for both drivers (which keep only the
    I/O): the next statement, its answer, or a value it could not store (thrown back in as
    :class:`sql.Careful` when the driver owns the connection; raised on the caller's own)."""

    def __init__(self, steps: q.Steps, own: bool) -> None:
        self.steps, self.own = steps, own
        self.answer: Any = None
        self.error: BaseException | None = None
        self.first = True  # no statement of the operation has run yet
        self.value: Any = None

    def next(self) -> tuple[str, dict[str, Any]] | None:
        """The next statement, or None when the operation is over (its result in ``value``)."""
        try:
            step = (self.steps.throw(self.error) if self.error is not None
                    else self.steps.send(self.answer))
        except StopIteration as stop:
            self.value = stop.value
            return None
        except q.Careful as exc:
            raise _refused(exc) from exc
        self.error = None
        return step

    def answered(self, rows: Any) -> None:
        self.answer, self.first = rows, False

    def refused(self, exc: BaseException) -> None:
        if not self.own:
            raise exc
        self.error, self.first = q.Careful(repr(exc)), False


def _refused(exc: BaseException) -> BackendError:
    return BackendError(f"PostgreSQL refused a value: {exc.args[0] if exc.args else exc}")


def _lost(settings: Settings, exc: BaseException) -> BackendConnectionError:
    return BackendConnectionError(f"PostgreSQL at {settings.shown} is not reachable: {exc}")


def _value_error(exc: BaseException) -> bool:
    """Whether ``exc`` says a value cannot be stored (not that the server is unwell)."""
    return isinstance(exc, psycopg.DataError | UnicodeEncodeError)


def check_schema(conn: psycopg.Connection[Any], settings: Settings) -> None:
    """Refuse a database whose qtasks tables are missing or of another version, naming the
    command that fixes it."""
    try:
        found = _version(conn.execute(q.schema_sql(settings.schema)["exists"],
                                      (f'"{settings.schema}".meta',)).fetchone(),
                         lambda: conn.execute(q.schema_sql(settings.schema)["version"]).fetchone())
    except psycopg.OperationalError as exc:
        raise _lost(settings, exc) from exc
    _judge(found, settings)


async def check_schema_async(conn: psycopg.AsyncConnection[Any], settings: Settings) -> None:
    try:
        exists = await (await conn.execute(q.schema_sql(settings.schema)["exists"],
                                           (f'"{settings.schema}".meta',))).fetchone()
        row = None
        if exists and exists[0]:
            row = await (await conn.execute(q.schema_sql(settings.schema)["version"])).fetchone()
    except psycopg.OperationalError as exc:
        raise _lost(settings, exc) from exc
    _judge(_version(exists, lambda: row), settings)


def _version(exists: Any, read: Callable[[], Any]) -> int | None:
    if not (exists and exists[0]):
        return None
    row = read()
    return int(row[0]) if row else None


def _judge(found: int | None, settings: Settings) -> None:
    command = f"qtasks migrate --url '{settings.shown}'"
    if found is None:
        raise BackendError(f"the qtasks tables are missing in schema {settings.schema!r} of "
                           f"{settings.shown}; create them with: {command} (or, in a Django "
                           "project with qtasks.contrib.django installed: manage.py migrate)")
    if found < q.SCHEMA_VERSION:
        raise BackendError(f"the qtasks tables in schema {settings.schema!r} of {settings.shown} "
                           f"are at version {found}, this release needs {q.SCHEMA_VERSION}; "
                           f"upgrade them with: {command}")
    if found > q.SCHEMA_VERSION:
        raise BackendError(f"the qtasks tables in schema {settings.schema!r} of {settings.shown} "
                           f"are at version {found}, newer than this release knows "
                           f"({q.SCHEMA_VERSION}); upgrade qtasks")


def migrate(url: str) -> tuple[int, int]:
    """Create or upgrade the qtasks tables of ``url``; returns the versions (before, after).
    Safe to run from several processes at once: an advisory lock serialises them."""
    settings = parse_url(url)
    statements = q.schema_sql(settings.schema)
    try:
        with psycopg.connect(settings.conninfo, autocommit=False) as conn:
            conn.execute(statements["lock"], (f"qtasks-migrate-{settings.schema}",))
            conn.execute(statements["create"])
            conn.execute(statements["meta"])
            row = conn.execute(statements["version"]).fetchone()
            before = int(row[0]) if row else 0
            for index in range(before, q.SCHEMA_VERSION):
                for statement in q.migration(index, settings.schema):
                    conn.execute(statement)
            conn.execute(statements["set_version"], (str(max(before, q.SCHEMA_VERSION)),))
            conn.commit()
    except psycopg.OperationalError as exc:
        raise _lost(settings, exc) from exc
    return before, max(before, q.SCHEMA_VERSION)


# -- the blocking side ------------------------------------------------------------------------------


class SyncDb:
    """Blocking connections, one per thread, and each thread's listener for finished tasks.

    Shared by every backend of the process with the same connection string (``shared``): a
    process with many apps on one database holds one connection per thread, not one per app.
    """

    _shared: dict[str, SyncDb] = {}
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls, settings: Settings) -> SyncDb:
        with cls._shared_lock:
            db = cls._shared.get(settings.conninfo)
            if db is None:
                db = cls._shared[settings.conninfo] = cls(settings)
            return db

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()
        self._checked: set[str] = set()

    def check(self, settings: Settings) -> None:
        """Refuse to work on a schema without the tables of this release (once per schema)."""
        if settings.schema not in self._checked:
            check_schema(self.conn(), settings)
            self._checked.add(settings.schema)

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.settings.conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            raise _lost(self.settings, exc) from exc
        try:
            conn.execute(GENERIC_PLANS)
        except psycopg.OperationalError as exc:
            conn.close()
            raise _lost(self.settings, exc) from exc
        except psycopg.Error as exc:
            _no_generic_plans(exc)
        return conn

    def conn(self) -> psycopg.Connection[Any]:
        return self._take()[0]

    def _take(self) -> tuple[psycopg.Connection[Any], bool]:
        """This thread's connection, and whether it was open before (reused)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and not _stale(conn):
            return conn, True
        if conn is not None:
            conn.close()
        conn = self._local.conn = self._connect()
        return conn, False

    def run(self, steps: q.Steps, conn: Any = None) -> Any:
        """Run an operation on this thread's connection, or on ``conn`` (the caller's own,
        in the caller's transaction: then it is neither committed nor closed here)."""
        own = conn is None
        target, reused = self._take() if own else (conn, False)
        stepper = _Stepper(steps, own)
        while (step := stepper.next()) is not None:
            while True:
                try:
                    cursor: Any
                    if own:
                        cursor = psycopg.RawCursor(target)
                        cursor.execute(*_raw(step), prepare=_prepare(step[0]))
                    else:
                        cursor = target.cursor()
                        cursor.execute(step[0], step[1], prepare=_prepare(step[0]))
                    stepper.answered(cursor.fetchall() if _has_rows(cursor) else [])
                except psycopg.OperationalError as exc:
                    if not own:
                        raise _lost(self.settings, exc) from exc
                    retry = _retry(exc, stepper.first, reused, target)
                    if target.closed or target.broken:
                        self._drop()
                    if retry:
                        target, reused = self._take()
                        continue
                    raise _lost(self.settings, exc) from exc
                except (psycopg.DataError, UnicodeEncodeError) as exc:
                    stepper.refused(exc)
                break
        return stepper.value

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def listener(self, channel: str) -> SyncListener:
        """This thread's listener, listening on ``channel``."""
        listener = getattr(self._local, "listener", None)
        if listener is None or listener.conn.closed:
            listener = self._local.listener = SyncListener(self)
        listener.listen(channel)
        return listener

    def close(self) -> None:
        self._drop()
        listener = getattr(self._local, "listener", None)
        self._local.listener = None
        if listener is not None:
            listener.conn.close()


class SyncListener:
    """``LISTEN`` on finished-task channels, for the blocking side's waits."""

    def __init__(self, db: SyncDb) -> None:
        self.db = db
        self.conn = db._connect()
        self.channels: set[str] = set()
        self.finished: set[tuple[str, str]] = set()  # notices read while waiting for another

    def listen(self, channel: str) -> None:
        if channel not in self.channels:
            try:
                self.conn.execute(f'LISTEN "{channel}"')
            except psycopg.OperationalError as exc:
                self.conn.close()
                raise _lost(self.db.settings, exc) from exc
            self.channels.add(channel)

    def unlisten(self) -> None:
        """Stop listening between waits: a listener that reads nothing while notices keep
        coming would fill its socket, and its server backend would then hold up the server's
        notification queue for everyone."""
        if self.channels and not self.conn.closed:
            try:
                self.conn.execute("UNLISTEN *")
            except psycopg.OperationalError:
                self.conn.close()  # the next wait opens another
        self.channels.clear()
        self.finished.clear()

    def wait(self, channel: str, key: str, seconds: float) -> bool:
        """Wait until ``key`` (``app|uuid``) is notified on ``channel``, at most ``seconds``."""
        if (channel, key) in self.finished:
            self.finished.discard((channel, key))
            return True
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                for notice in self.conn.notifies(timeout=left):
                    if notice.channel == channel and notice.payload == key:
                        return True
                    if len(self.finished) > 10_000:
                        self.finished.clear()
                    self.finished.add((notice.channel, notice.payload))
                    break
        except psycopg.OperationalError:
            # The connection is gone: the next wait opens another, and the caller reads the
            # record again after this pause.
            self.conn.close()
        return False


# -- the asyncio side -------------------------------------------------------------------------------


class AsyncDb:
    """An event loop's connections: up to ``pool_size``, each used by one operation at a time,
    and the loop's listener."""

    def __init__(self, settings: Settings, app: str) -> None:
        self.settings = settings
        self.app = app
        self._free: list[psycopg.AsyncConnection[Any]] = []
        self._busy: set[psycopg.AsyncConnection[Any]] = set()
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._checked = False
        self._listeners: dict[str, AsyncListener] = {}
        self._closed = False
        self.fresh: str | None = None  # a task enqueued watched just now (see enqueue_watched)

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            conn = await psycopg.AsyncConnection.connect(self.settings.conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            raise _lost(self.settings, exc) from exc
        try:
            await conn.execute(GENERIC_PLANS)
        except psycopg.OperationalError as exc:
            await conn.close()
            raise _lost(self.settings, exc) from exc
        except psycopg.Error as exc:
            _no_generic_plans(exc)
        if not self._checked:
            try:
                await check_schema_async(conn, self.settings)
            except BaseException:
                await conn.close()
                raise
            self._checked = True
        return conn

    async def run(self, steps: q.Steps, conn: Any = None) -> Any:
        if conn is not None:
            return await self._drive(steps, conn, own=False)
        async with self._slots:
            held: list[Any] = []
            try:
                return await self._drive(steps, None, own=True, held=held)
            finally:
                for target, ok in held:
                    self._busy.discard(target)
                    # a connection whose operation was cancelled or failed mid-way may hold an
                    # unread reply: it is closed, never reused
                    if ok and not target.closed and not self._closed:
                        self._free.append(target)
                    else:
                        await target.close()

    async def _take(self) -> tuple[Any, bool]:
        """A free connection (reused: True) or a new one."""
        while self._free:
            target = self._free.pop()
            if not _stale(target):
                return target, True
            await target.close()
        return await self.connect(), False

    async def _drive(self, steps: q.Steps, target: Any, own: bool,
                     held: list[Any] | None = None) -> Any:
        """Run ``steps`` on ``target``, or (``own``) on connections of this loop, put in
        ``held`` as ``[connection, fit for reuse]`` for the caller to give back."""
        reused = False
        if own:
            assert held is not None
            target, reused = await self._take()
            self._busy.add(target)
            held.append([target, False])
        stepper = _Stepper(steps, own)
        while (step := stepper.next()) is not None:
            while True:
                try:
                    cursor: Any
                    if own:
                        cursor = psycopg.AsyncRawCursor(target)
                        await cursor.execute(*_raw(step), prepare=_prepare(step[0]))
                    else:
                        cursor = target.cursor()
                        await cursor.execute(step[0], step[1], prepare=_prepare(step[0]))
                    stepper.answered(await cursor.fetchall() if _has_rows(cursor) else [])
                except psycopg.OperationalError as exc:
                    if own and held is not None and _retry(exc, stepper.first, reused, target):
                        target, reused = await self._take()
                        self._busy.add(target)
                        held.append([target, False])
                        continue
                    raise _lost(self.settings, exc) from exc
                except (psycopg.DataError, UnicodeEncodeError) as exc:
                    stepper.refused(exc)
                break
        if held:
            held[-1][1] = True
        return stepper.value

    async def listener(self, channel: str) -> AsyncListener:
        """This loop's listener on ``channel`` (``Sql.wake_channel`` or ``Sql.done_channel``),
        listening: a ``LISTEN`` issued before the caller's read. One connection per channel,
        so that a worker is not woken by every finished task a producer waits on, nor a
        producer by every enqueue."""
        listener = self._listeners.get(channel)
        if listener is None or listener.broken:
            if listener is not None:
                await listener.close()
            listener = self._listeners[channel] = AsyncListener(self, channel)
            await listener.start()
        return listener

    def listening(self, channel: str) -> AsyncListener | None:
        """This loop's listener on ``channel`` if it is listening now."""
        listener = self._listeners.get(channel)
        return None if listener is None or listener.broken else listener

    def abandon(self) -> None:
        """Close the sockets of a loop that is gone, without it (``pgconn.finish``)."""
        self._closed = True
        conns = [*self._free, *self._busy]
        conns += [ls._conn for ls in self._listeners.values() if ls._conn is not None]
        self._free, self._listeners = [], {}
        for conn in conns:
            if not conn.closed:
                conn.pgconn.finish()

    async def close(self) -> None:
        self._closed = True
        free, self._free = self._free, []
        for conn in free:
            await conn.close()
        listeners, self._listeners = self._listeners, {}
        for listener in listeners.values():
            await listener.close()


class AsyncListener:
    """One connection that ``LISTEN``s on one channel: the wake channel wakes idle workers
    (``generation``), the done channel producers waiting on a task (``expect``)."""

    def __init__(self, db: AsyncDb, channel: str) -> None:
        self.db = db
        self.channel = channel
        self.prefix = f"{db.app}|"
        self.generation = 0
        self.broken = False
        self._changed = asyncio.Event()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        conn = await self.db.connect()
        try:
            await conn.execute(f'LISTEN "{self.channel}"')
        except psycopg.OperationalError as exc:
            await conn.close()
            raise _lost(self.db.settings, exc) from exc
        self._conn = conn
        self._reader = asyncio.create_task(self._read(conn))

    async def _read(self, conn: psycopg.AsyncConnection[Any]) -> None:
        wake, prefix = self.channel == self.db.settings.sql.wake_channel, self.prefix
        try:
            async for notice in conn.notifies():
                payload = notice.payload
                if not payload.startswith(prefix):
                    continue
                if wake:
                    self._bump()
                else:
                    for future in self._waiters.pop(payload[len(prefix):], ()):
                        if not future.done():
                            future.set_result(None)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # the connection is gone: waiters read again, and the next call reconnects
            log.info("the PostgreSQL listener connection was lost (%s); reconnecting on next use",
                     exc)
        finally:
            self.broken = True
            self._bump()
            for futures in self._waiters.values():
                for future in futures:
                    if not future.done():
                        future.set_result(None)
            self._waiters.clear()

    def _bump(self) -> None:
        self.generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_change(self, seen: int, seconds: float) -> None:
        """Until a wake notice arrives after ``seen`` (a ``generation``), at most ``seconds``.
        The event is awaited in this task (``asyncio.timeout``, not ``wait_for``, which would
        wrap it in a task of its own): one loop turn fewer between the notice and the claim."""
        if self.generation != seen or self.broken or seconds <= 0:
            return
        try:
            async with asyncio.timeout(seconds):
                while self.generation == seen and not self.broken:
                    await self._changed.wait()
        except TimeoutError:
            return

    def expect(self, uuid: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.broken:
            future.set_result(None)
        else:
            self._waiters.setdefault(uuid, []).append(future)
        return future

    def forget(self, uuid: str, future: asyncio.Future[None]) -> None:
        futures = self._waiters.get(uuid)
        if futures and future in futures:
            futures.remove(future)
            if not futures:
                del self._waiters[uuid]

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._conn is not None:
            await self._conn.close()


__all__ = ["AsyncDb", "Settings", "SyncDb", "errors", "migrate", "parse_url"]
