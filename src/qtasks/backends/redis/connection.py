"""Redis connections: the URL forms, the two redis-py clients, the drivers of ``protocol``'s
operations, and which redis-py errors are transient.

URL forms (``?`` options below):

- ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS; ``ssl_ca_certs=``,
  ``ssl_certfile=``, ``ssl_keyfile=``, ``ssl_cert_reqs=`` as redis-py reads them),
  ``unix:///path/to/redis.sock[?db=N]``;
- ``redis+sentinel://[[user]:password@]host1:26379,host2:26379/<service>[/db]`` (also
  ``rediss+sentinel://``): the master of ``service`` as the sentinels report it, followed
  across failovers; ``sentinel_password=`` if the sentinels want one;
- ``redis+cluster://host:port[,host:port...]`` (also ``rediss+cluster://``): a Redis Cluster,
  found from any of its nodes.

Options of qtasks itself, removed before the URL reaches redis-py: ``result_ttl`` (seconds a
final record is kept, default one day, ``0`` keeps them), ``dead_letter_ttl`` (default seven
days, ``0`` keeps them), ``dead_letter_max`` (default 100000 entries), ``prefix`` (default
``qtasks``), ``wait_replicas`` (enqueue and cancel wait until that many replicas have the
write, ``WAIT``, for up to ``wait_timeout`` seconds, default 1, else fail with
``BackendConnectionError``; for a Sentinel setup, where a failover loses writes the replica
had not received). Timeouts default to 2 s to connect and 5 s per reply, with three retries, so a
producer facing a Redis that is down gets ``BackendConnectionError`` within about ten seconds;
``socket_connect_timeout=``, ``socket_timeout=`` and ``retries=`` change that.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from qtasks.backends.redis.protocol import (
    FUNCTION,
    SCRIPT,
    Command,
    Keys,
    Op,
    Script,
    Scripts,
    library,
    notice,
)
from qtasks.core.record import RecordRow
from qtasks.exceptions import BackendConnectionError, BackendError
from qtasks.version import __version__

try:
    import redis
    import redis.asyncio as aredis
    import redis.asyncio.cluster
    import redis.asyncio.sentinel
    import redis.cluster
    import redis.sentinel
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise BackendError(
        "redis:// URLs need the Redis extra: pip install 'qtasks[redis]'"
    ) from exc

DAY = 86400.0

log = logging.getLogger("qtasks.redis")


@dataclass
class RedisSettings:
    """What a Redis URL says, once parsed."""

    kind: str  # "single", "sentinel" or "cluster"
    # for redis-py (single), without qtasks' own options; never in the repr, with the password
    # and the options (which may name one): a debugger, a test runner's locals or an error
    # tracker shows this object
    url: str = field(repr=False)
    hosts: list[tuple[str, int]] = field(default_factory=list)  # sentinel and cluster nodes
    service: str = ""
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    options: dict[str, str] = field(default_factory=dict, repr=False)  # for redis-py
    result_ttl: float = DAY
    dead_letter_ttl: float = 7 * DAY
    dead_letter_max: int = 100_000
    prefix: str = "qtasks"
    wait_replicas: int = 0
    wait_timeout: float = 1.0
    connect_timeout: float = 2.0
    socket_timeout: float = 5.0
    retries: int = 3

    def script_settings(self) -> list[Any]:
        """The settings every script call carries (ms, count, ms)."""
        return [int(self.result_ttl * 1000), self.dead_letter_max,
                int(self.dead_letter_ttl * 1000)]


def _number(options: dict[str, str], name: str, default: float) -> float:
    raw = options.pop(name, None)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BackendError(f"the Redis URL option {name}={raw!r} is not a number") from None
    if value < 0:
        raise BackendError(f"the Redis URL option {name} cannot be negative")
    return value


def _unreadable() -> BackendError:
    # Not even the redacted URL: where the host part cannot be read, neither can the password's
    # end be told for sure.
    return BackendError("the Redis URL's host part cannot be read (a port that is not a "
                        "number); a password with '/', '@', ':', '?' or '#' in it must be "
                        "percent-encoded: urllib.parse.quote(password, safe='')")


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    hosts = []
    for part in netloc.split(","):
        host, _, port = part.rpartition(":") if ":" in part.strip("[]") else (part, "", "")
        try:
            number = int(port) if port else default_port
        except ValueError:
            raise _unreadable() from None
        hosts.append((host.strip("[]") or "localhost", number))
    return hosts


def parse_url(url: str) -> RedisSettings:
    """Split a Redis URL into what redis-py needs and what qtasks reads."""
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in {"redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel",
                                 "redis+cluster", "rediss+cluster"}:
        raise BackendError(f"not a Redis URL: scheme {scheme!r}")
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    settings = RedisSettings(kind="single", url="")
    settings.result_ttl = _number(options, "result_ttl", DAY)
    settings.dead_letter_ttl = _number(options, "dead_letter_ttl", 7 * DAY)
    settings.dead_letter_max = int(_number(options, "dead_letter_max", 100_000))
    settings.prefix = options.pop("prefix", "qtasks") or "qtasks"
    settings.connect_timeout = _number(options, "socket_connect_timeout", 2.0)
    settings.socket_timeout = _number(options, "socket_timeout", 5.0)
    settings.retries = int(_number(options, "retries", 3))
    settings.wait_replicas = int(_number(options, "wait_replicas", 0))
    settings.wait_timeout = _number(options, "wait_timeout", 1.0)
    settings.tls = scheme.startswith("rediss")
    settings.options = options
    creds, at, netloc = parts.netloc.rpartition("@")
    if at:
        user, colon, password = creds.partition(":")
        settings.username = unquote(user) or None
        settings.password = unquote(password) if colon else None
        if not colon and user:  # redis://secret@host: redis-py reads that as a password
            settings.username, settings.password = None, unquote(user)
    if scheme.endswith("+sentinel"):
        settings.kind = "sentinel"
        settings.hosts = _hosts(netloc, 26379)
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise BackendError("a redis+sentinel:// URL names the service after the hosts: "
                               "redis+sentinel://host:26379/mymaster[/db]")
        settings.service = path[0]
        settings.db = int(path[1]) if len(path) > 1 else int(options.pop("db", 0))
    elif scheme.endswith("+cluster"):
        settings.kind = "cluster"
        settings.hosts = _hosts(netloc, 6379)
    else:
        try:
            _ = parts.port  # read here, so that urllib's error, which quotes the URL, is not shown
        except ValueError:
            raise _unreadable() from None
        query = urlencode(options)
        settings.url = url.split("?", 1)[0] + (f"?{query}" if query else "")
    return settings


def _retry(settings: RedisSettings, asyncio_: bool) -> Any:
    kind = AsyncRetry if asyncio_ else Retry
    return kind(ExponentialBackoff(cap=0.5, base=0.05), settings.retries)


def _common(settings: RedisSettings, blocking: bool, asyncio_: bool) -> dict[str, Any]:
    """redis-py keyword arguments: our timeouts and retries, and the URL's own options."""
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": settings.connect_timeout,
        # a blocking pop waits up to IDLE_BLOCK: its socket must outwait it
        "socket_timeout": 30.0 if blocking else settings.socket_timeout,
        "retry": _retry(settings, asyncio_),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    if not {"lib_name", "lib_version", "driver_info"} & settings.options.keys():
        kwargs.update(_DRIVER)
    for name, value in settings.options.items():
        kwargs[name] = _convert(name, value)
    return kwargs


def _driver() -> dict[str, Any]:
    """What each connection tells Redis about its client (``CLIENT SETINFO``, shown by
    ``CLIENT LIST``): redis-py, used by qtasks, e.g. ``lib-name=redis-py(qtasks_v0.1.0)``.

    The version given is redis-py's own ``__version__``. Left to itself, redis-py 8 reads it
    from the installed package's metadata on the first connection, which parses that file
    with the ``email`` package and keeps about 0.2 MB more in every worker."""
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # redis-py before 7.1: the same text through its older arguments
        return {"lib_name": f"redis-py(qtasks_v{__version__})", "lib_version": redis.__version__}
    info = DriverInfo(lib_version=redis.__version__).add_upstream_driver("qtasks", __version__)
    return {"driver_info": info}


_DRIVER = _driver()


def _convert(name: str, value: str) -> Any:
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS

    parser: Any = URL_QUERY_ARGUMENT_PARSERS.get(name)
    return parser(value) if parser else value


try:
    import hiredis

    from qtasks.backends.redis.wire import BlockingWire, Wire
except ImportError:  # pragma: no cover - the extra installs it
    hiredis = None  # type: ignore[assignment]


class _HiredisPacking:
    """redis-py's blocking connections pack commands with hiredis, its asyncio ones in Python,
    which cost a worker about a third of its time per round trip (an exchange carries hundreds
    of arguments). This mixin packs with hiredis there too."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str) and " " in first:  # 'CONFIG GET' and the like
            args = (*first.encode().split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except (TypeError, UnicodeError):  # let redis-py raise its own error
            return super().pack_command(*args)  # type: ignore[misc]


_PACKED: dict[type, type] = {}


def _pack_with_hiredis(client: Any) -> Any:
    pool = getattr(client, "connection_pool", None)
    if hiredis is None or pool is None:
        return client
    cls = pool.connection_class
    if cls not in _PACKED:
        _PACKED[cls] = type(cls.__name__, (_HiredisPacking, cls), {})
    pool.connection_class = _PACKED[cls]
    return client


def make_client(settings: RedisSettings, asyncio_: bool, blocking: bool = False) -> Any:
    """A redis-py client (``redis.asyncio`` when ``asyncio_``) for these settings."""
    lib: Any = aredis if asyncio_ else redis
    kwargs = _common(settings, blocking, asyncio_)
    if settings.kind == "single":
        client = lib.Redis.from_url(settings.url, **kwargs)
        return _pack_with_hiredis(client) if asyncio_ else client
    auth = {"username": settings.username, "password": settings.password}
    if settings.tls:
        kwargs["ssl"] = True
    if settings.kind == "sentinel":
        sentinel_kwargs = {"socket_connect_timeout": settings.connect_timeout,
                           "socket_timeout": settings.socket_timeout,
                           "password": kwargs.pop("sentinel_password", None), **_DRIVER}
        sentinel = lib.sentinel.Sentinel(settings.hosts, sentinel_kwargs=sentinel_kwargs,
                                         **auth, **kwargs)
        master = sentinel.master_for(settings.service, db=settings.db)
        return _pack_with_hiredis(master) if asyncio_ else master
    cluster_lib: Any = aredis.cluster if asyncio_ else redis.cluster
    nodes = [cluster_lib.ClusterNode(host, port) for host, port in settings.hosts]
    kwargs.pop("retry_on_error", None)
    return cluster_lib.RedisCluster(startup_nodes=nodes, **auth, **kwargs)


# -- errors --------------------------------------------------------------------------------------

# Not transient although redis-py files them under ConnectionError: wrong credentials or rights.
_SETUP_ERRORS: tuple[type[BaseException], ...] = (
    redis.AuthenticationError, redis.exceptions.AuthorizationError,
    redis.exceptions.NoPermissionError,
)
_TRANSIENT: tuple[type[BaseException], ...] = (
    redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError, redis.exceptions.MasterDownError,
    redis.exceptions.ReadOnlyError, redis.exceptions.BusyLoadingError, ConnectionError,
    OSError,
)


def translate(exc: BaseException, where: str) -> BaseException:
    """The qtasks exception for a redis-py one (messages name host and port, never the
    password: redis-py does not put it in them)."""
    if isinstance(exc, _SETUP_ERRORS):
        return BackendError(f"Redis refused {where}: {exc}")
    if isinstance(exc, _TRANSIENT) or "BUSY" in str(exc)[:8]:
        return BackendConnectionError(f"Redis is not reachable ({where}): {exc}")
    if isinstance(exc, redis.RedisError):
        return BackendError(f"Redis failed ({where}): {exc}")
    return exc


# Writes a producer is told have happened: with ``wait_replicas``, each is followed by ``WAIT``
# on the same connection, and fails unless that many replicas have it.
REPLICATED = frozenset({"enqueue", "cancel"})


def _check_replicated(acked: int, settings: RedisSettings) -> None:
    if acked < settings.wait_replicas:
        raise BackendConnectionError(
            f"the write reached {acked} of the {settings.wait_replicas} replicas asked for "
            f"(wait_replicas) within {settings.wait_timeout:g}s; it may be lost in a failover")


# -- direct script calls -------------------------------------------------------------------------

# Why the hot path skips redis-py's command machinery: a pool checkout polls the socket for
# readiness, every argument is encoded in Python before hiredis packs the command, and metrics
# hooks run per call; for a single enqueue that cost more than the round trip itself. A direct
# call packs the whole FCALL (or EVALSHA) in one hiredis call and sends it on a connection of its own
# (redis-py's connection class, so URL options, AUTH, SELECT and TLS are redis-py's). Anything
# that goes wrong on the wire hands the call to the client's ordinary path, which retries with
# backoff; every script operation is safe to send twice (``protocol``'s module docstring).

_WIRE_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError, OSError)
_NOTICES = ("smessage", "message")  # what a subscription to final-record notices delivers
# what Redis pushes when it ends a subscription itself (a Cluster slot that moved away)
_ENDED = ("sunsubscribe", "unsubscribe")
# what ``SyncConn.next_final`` returns when the subscription broke: notices may have been lost
SUBSCRIPTION_LOST: tuple[str, None] = ("", None)


def _ended(kind: Any, count: Any) -> bool:
    """Whether a push is Redis ending the subscription itself (none left: count 0)."""
    return kind in _ENDED and not count


def _lost(why: object) -> None:
    log.warning("lost the connection that hears of final records (%s); waiting calls read "
                "their records again", why)

# notices an asyncio listener keeps for waits that have not begun: how many with their record,
# and for how long the record is trusted; past that, only that the notice came (the wait then
# reads the record), for as many and as long again as ``_TOLD_KEPT``/``_TOLD_SECONDS``
_EARLY_KEPT, _EARLY_SECONDS = 256, 10.0
_TOLD_KEPT, _TOLD_SECONDS = 10_000, 120.0


def _sharded(error: redis.ResponseError | None) -> bool:
    """Whether the server has sharded pub/sub (Redis 7.0+), from the error ``PUBSUB
    SHARDNUMSUB`` gave (``None``: none). Only an unknown subcommand says no: a user whom an ACL
    denies ``PUBSUB`` is on a server recent enough for the rest of the backend."""
    return error is None or "unknown subcommand" not in str(error).lower()


def _not_subscribed(ready: asyncio.Future[None], exc: Exception) -> None:
    """A listener could not subscribe: whatever the reason, the waits awaiting ``ready`` hear
    of it."""
    if not ready.done():
        ready.set_exception(translate(exc, "subscribing")
                            if isinstance(exc, redis.RedisError | OSError) else exc)


class _Wire(Exception):
    """A direct call failed on the wire; the ordinary path takes it over."""


def _direct_ok(settings: RedisSettings) -> bool:
    return hiredis is not None and settings.kind == "single"


class _Code:
    """How direct calls name the backend's code: ``FCALL`` of its function library, loaded
    once per Redis (``protocol.library()``), or ``EVALSHA`` of the script where Redis has no
    functions (before 7.0). Shared by the connections of one driver."""

    def __init__(self, sha: str, route: str) -> None:
        self.sha, self.route = sha, route
        self.functions = True

    def packed(self, calls: list[list[Any]]) -> list[bytes]:
        head = (("FCALL", FUNCTION) if self.functions else ("EVALSHA", self.sha))
        return [hiredis.pack_command((*head, 1, self.route, *args)) for args in calls]

    def missing(self, reply: Any) -> bool:
        """The call did not run because Redis lacks the code, or refuses ``FCALL`` (a server
        before 7.0, an ACL without it): load the code, send the call again. Decided from the
        reply alone: another thread may have switched to the script form meanwhile."""
        if isinstance(reply, redis.exceptions.NoScriptError):
            return True
        if not isinstance(reply, redis.ResponseError):
            return False
        text = str(reply).lower()
        return "function not found" in text or ("fcall" in text and _refused(text))

    def load(self, functions: bool) -> bytes:
        command: Any = (("FUNCTION", "LOAD", "REPLACE", library()) if functions
                        else ("SCRIPT", "LOAD", SCRIPT))
        return hiredis.pack_command(command)

    def loaded(self, reply: Any, functions: bool) -> bool:
        """After the reply to ``load(functions)``: ``False`` when the script must be loaded
        instead (Redis has no functions, or the user may not load them). Decided by what was
        sent, not by ``self.functions``: another thread's load may have changed that meanwhile,
        and must not turn this one's refused ``FUNCTION LOAD`` into an error."""
        if isinstance(reply, redis.ResponseError):
            if functions and _refused(str(reply).lower()):
                self.functions = False
                return False
            raise reply
        return True


def _refused(text: str) -> bool:
    return "unknown command" in text or "no permissions" in text or "noperm" in text


def _direct_steps(code: _Code, calls: Iterator[list[Any]], taken: list[list[Any]],
                  wait: list[bytes] | None) -> Generator[list[bytes] | None, Any, list[Any]]:
    """What a direct call sends and reads, written once for both drivers: it yields packed
    commands to send (the driver sends them and resumes it with ``None``), or ``None`` to have
    one reply read (and sent in). Each call goes out as soon as it is encoded; the replies are
    read at the end. Calls that found the code missing are sent again once it is loaded, and
    ``wait`` (a ``WAIT`` for replicas) follows the calls both times, since only the second one
    counts what the calls sent again wrote. Returns the calls' replies, then ``WAIT``'s."""
    for args in calls:
        taken.append(args)
        yield code.packed([args])
    if wait:
        yield wait
    replies = []
    for _ in range(len(taken) + bool(wait)):
        replies.append((yield None))
    missing = [i for i, reply in enumerate(replies[:len(taken)]) if code.missing(reply)]
    if missing:  # a new or flushed Redis: load the code, send those calls again
        while True:
            functions = code.functions
            yield [code.load(functions)]
            if code.loaded((yield None), functions):
                break
        yield code.packed([taken[i] for i in missing])
        if wait:
            yield wait
        for i in missing:
            replies[i] = yield None
        if wait:
            replies[-1] = yield None
    return replies


def _check_replies(replies: list[Any], settings: RedisSettings, wait: bool) -> list[Any]:
    """Raise the first error reply; check ``WAIT``'s count (the last reply) when there is one."""
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    if wait:
        _check_replicated(replies.pop(), settings)
    return replies


# -- drivers ---------------------------------------------------------------------------------------


class _Calls:
    """What both drivers send for a script step: the script's arguments (prefix, operation,
    settings, then the operation's own), and whether a ``WAIT`` must follow it."""

    def __init__(self, settings: RedisSettings, keys: Keys) -> None:
        self.head = [keys.prefix]
        self.settings = settings.script_settings()
        self.replicas = settings.wait_replicas
        self.wait = (settings.wait_replicas, int(settings.wait_timeout * 1000))
        wait: Any = ("WAIT", *self.wait)
        self.wait_packed = [hiredis.pack_command(wait)] if hiredis is not None else []

    def full(self, args: list[Any]) -> list[Any]:
        return [*self.head, args[0], *self.settings, *args[1:]]

    def replicated(self, op: str) -> bool:
        return bool(self.replicas) and op in REPLICATED

    def steps(self, step: Script | Scripts) -> tuple[Iterator[list[Any]], bool]:
        """The full arguments of each call of ``step`` (lazily: a bulk enqueue encodes the
        next call while Redis runs the one before), and whether ``WAIT`` follows them."""
        if isinstance(step, Script):
            return iter((self.full(step.args),)), self.replicated(step.args[0])
        return (self.full(args) for args in step.calls), self.replicated(step.op)


class SyncConn:
    """Runs operations on the blocking client (one pool, shared by the threads of a process)."""

    def __init__(self, settings: RedisSettings, keys: Keys) -> None:
        self.settings = settings
        self.keys = keys
        self.redis = make_client(settings, asyncio_=False)
        self.script = self.redis.register_script(SCRIPT)
        self.calls = _Calls(settings, keys)
        self._local = threading.local()
        self.sharded: bool | None = None  # the server has sharded pub/sub (found on first use)
        self.direct = _direct_ok(settings)
        self.code = _Code(self.script.sha, keys.route)
        self._wires: weakref.WeakSet[BlockingWire] = weakref.WeakSet()  # closed by close()

    def run(self, op: Op) -> Any:
        reply: Any = None
        try:
            while True:
                step = op.send(reply)
                if isinstance(step, Command):
                    reply = self.redis.execute_command(*step.args)
                    continue
                calls, replicated = self.calls.steps(step)
                replies = self._scripts(calls, replicated)
                reply = replies[0] if isinstance(step, Script) else replies
        except StopIteration as stop:
            return stop.value
        except (redis.RedisError, OSError) as exc:
            raise translate(exc, "a blocking call") from exc

    def _scripts(self, calls: Iterator[list[Any]], replicated: bool) -> list[Any]:
        taken: list[list[Any]] = []
        if self.direct:
            try:
                return self._direct(calls, taken, replicated)
            except _Wire as exc:
                log.debug("a direct call failed (%s); retrying through redis-py", exc.__cause__)
        replies = []
        for args in [*taken, *calls]:
            if replicated:
                pipe = self.redis.pipeline(transaction=False)
                self.script(keys=[self.keys.route], args=args, client=pipe)
                pipe.execute_command("WAIT", *self.calls.wait)
                reply, acked = pipe.execute()
                _check_replicated(acked, self.settings)
            else:
                reply = self.script(keys=[self.keys.route], args=args)
            replies.append(reply)
        return replies

    def _connection(self) -> Any:
        """This thread's own connection for direct calls (it connects on first use; code
        missing after a restart is loaded when a call finds it missing)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or not conn.usable():
            pool = self.redis.connection_pool
            conn = self._local.conn = BlockingWire(
                pool.connection_class(**pool.connection_kwargs))
            self._wires.add(conn)
        return conn

    def _direct(self, calls: Iterator[list[Any]], taken: list[list[Any]],
                replicated: bool) -> list[Any]:
        """Run ``_direct_steps`` on this thread's connection. Whatever interrupts it leaves
        the connection closed: replies still unread would answer the next call."""
        try:
            conn = self._connection()
        except _WIRE_ERRORS as exc:
            raise _Wire() from exc
        steps = _direct_steps(self.code, calls, taken,
                              self.calls.wait_packed if replicated else None)
        try:
            step = next(steps)
            while True:
                if step is None:
                    step = steps.send(conn.reply())
                else:
                    conn.send(step)
                    step = steps.send(None)
        except StopIteration as stop:
            replies: list[Any] = stop.value
        except _WIRE_ERRORS as exc:
            self._drop(conn)
            raise _Wire() from exc
        except BaseException:
            self._drop(conn)
            raise
        return _check_replies(replies, self.settings, replicated)

    def _drop(self, conn: BlockingWire) -> None:
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None

    def next_final(self, timeout: float) -> tuple[str, RecordRow | None] | None:
        """The next final record announced to this thread within ``timeout``: its uuid and
        the record the notice carries; ``None`` if none came."""
        sub = self.subscribed()
        try:
            if isinstance(sub, BlockingWire):
                deadline = time.monotonic() + timeout
                while (message := sub.wait(max(0.0, deadline - time.monotonic()))) is not None:
                    if isinstance(message, list) and len(message) == 3:
                        if message[0] in _NOTICES:
                            return notice(message[2])
                        if _ended(message[0], message[2]):
                            raise redis.ConnectionError("Redis ended the subscription")
                return None  # subscription replies and other pushes are skipped
            read = (self.sharded and getattr(sub, "get_sharded_message", None)) or sub.get_message
            message = read(ignore_subscribe_messages=True, timeout=timeout)
        except (redis.RedisError, OSError) as exc:
            # The subscription broke (a restart, or Redis dropped a reader that fell behind):
            # a new one next time; the waiter reads the record again, nothing is lost.
            _lost(exc)
            self._local.pubsub = None
            sub.close()
            return SUBSCRIPTION_LOST
        if message is None or message["type"] not in _NOTICES:
            return None
        return notice(message["data"])

    @property
    def fresh(self) -> str | None:
        """The task this thread enqueued last for a wait that follows (``enqueue_watched``)."""
        return getattr(self._local, "fresh", None)

    @fresh.setter
    def fresh(self, uuid: str | None) -> None:
        self._local.fresh = uuid

    @property
    def listener(self) -> str:
        """This thread's listener id: records it waits for announce their final write on
        ``keys.final_channel(listener)``. It outlives a broken subscription, so records marked
        for it before reach the new one."""
        me = getattr(self._local, "listener", None)
        if me is None or me[0] != os.getpid():  # a forked child must not share its parent's
            me = self._local.listener = (os.getpid(), os.urandom(8).hex())
        return me[1]

    def subscribed(self) -> Any:
        """This thread's subscription to the notifications of the final records it waits for:
        a ``BlockingWire`` on the direct path, else redis-py's ``PubSub``."""
        sub = getattr(self._local, "pubsub", None)
        if sub is not None and (not isinstance(sub, BlockingWire) or sub.usable()):
            return sub
        try:
            if self.sharded is None:
                try:
                    self.redis.execute_command("PUBSUB", "SHARDNUMSUB")
                    self.sharded = True
                except redis.ResponseError as exc:
                    self.sharded = _sharded(exc)
            channel = self.keys.final_channel(self.listener)
            sub = self._subscribe_direct(channel) if self.direct else None
            if sub is None:
                sub = self.redis.pubsub(ignore_subscribe_messages=True)
                if self.sharded:
                    sub.ssubscribe(channel)
                else:
                    sub.subscribe(channel)
        except redis.RedisError as exc:
            raise translate(exc, "subscribing") from exc
        self._local.pubsub = sub
        self._local.fresh = None  # a notice sent before this subscription was not heard
        return sub

    def told_of_losses(self) -> bool:
        """Whether this thread's subscription tells when it is lost (``next_final`` returns
        ``SUBSCRIPTION_LOST``): a ``BlockingWire``, not redis-py's ``PubSub``, which
        reconnects and subscribes again without telling."""
        return isinstance(self.subscribed(), BlockingWire)

    def _subscribe_direct(self, channel: str) -> BlockingWire | None:
        """A subscription read by ``BlockingWire``; ``None`` if that failed (redis-py's then)."""
        pool = self.redis.connection_pool
        sub: BlockingWire | None = None
        try:
            sub = BlockingWire(pool.connection_class(**pool.connection_kwargs))
            # Redis before 7.0 has no sharded pub/sub (the scripts fall back on PUBLISH)
            command: Any = ("SSUBSCRIBE" if self.sharded else "SUBSCRIBE", channel)
            sub.send([hiredis.pack_command(command)])
            confirmed = sub.reply()
            if isinstance(confirmed, BaseException):
                raise confirmed
        except _WIRE_ERRORS as exc:
            log.debug("a direct subscription failed (%s); subscribing through redis-py", exc)
            if sub is not None:
                sub.close()
            return None
        self._wires.add(sub)
        return sub

    def close(self) -> None:
        sub = getattr(self._local, "pubsub", None)
        if sub is not None:
            sub.close()
            self._local.pubsub = None
        for wire in list(self._wires):
            wire.close()
        self._local.conn = None
        self.redis.close()


@dataclass(frozen=True, slots=True)
class Wait:
    """One idle wait's keys: ``wake``, a private marker that ends the blocking pop; and
    ``abandon`` (under the app's prefix), which, set before that marker, makes the claim sent
    behind the pop take nothing."""

    wake: str
    abandon: str


class AsyncConn:
    """Runs operations on the asyncio client of one event loop."""

    def __init__(self, settings: RedisSettings, keys: Keys) -> None:
        self.settings = settings
        self.keys = keys
        self.redis = make_client(settings, asyncio_=True)
        self.script = self.redis.register_script(SCRIPT)
        self.calls = _Calls(settings, keys)
        self._blocking: Any = None
        self._me = f"w:{os.urandom(6).hex()}"
        self.private = f"{keys.prefix}{self._me}:wake"  # ends an abandoned wait
        self._waits = 0
        self._pokes: set[asyncio.Future[None]] = set()
        self.waiters: dict[str, list[asyncio.Future[RecordRow | None]]] = {}
        self.early: dict[str, tuple[float, RecordRow | None]] = {}  # see _deliver
        self.told: dict[str, float] = {}  # notices evicted from ``early``: uuid -> when
        self.fresh: str | None = None  # see SyncConn.fresh
        self.listener = os.urandom(8).hex()  # see SyncConn.listener
        self._listener: asyncio.Task[None] | None = None
        self.sharded: bool | None = None  # see SyncConn.sharded
        self._polling = False  # no pub/sub here: waits re-read (see subscribed)
        self._subscribed: asyncio.Future[None] | None = None
        self.direct = _direct_ok(settings)
        self.pipelined_wait = True  # an idle claim is written behind its BZPOPMIN (see run)
        self.code = _Code(self.script.sha, keys.route)
        self._free: list[Any] = []  # idle connections for direct calls
        self._closed = False  # a direct call that ends after close() closes its connection

    def new_wait(self) -> Wait:
        """Names for one idle wait of ``run(woken=...)``: see ``Wait``."""
        self._waits += 1
        me = f"{self._me}:{self._waits}"
        return Wait(f"{self.keys.prefix}{me}:wake", f"{me}:abandon")

    async def run(self, op: Op, woken: tuple[Sequence[str], float, Wait] | None = None) -> Any:
        """Run ``op``. With ``woken`` (queues, seconds, a ``new_wait()``), its first script
        call goes right behind a blocking pop of those queues' wake markers, on the same
        connection: Redis runs it the moment the pop returns (a task was enqueued) or times
        out, and both replies come back together, one round trip less than popping and then
        calling. ``abandon`` ends such a wait early and makes that call claim nothing."""
        reply: Any = None
        try:
            while True:
                step = op.send(reply)
                if isinstance(step, Command):
                    reply = await self.redis.execute_command(*step.args)
                    continue
                calls, replicated = self.calls.steps(step)
                replies = await self._scripts(calls, replicated, woken)
                woken = None
                reply = replies[0] if isinstance(step, Script) else replies
        except StopIteration as stop:
            return stop.value
        except (redis.RedisError, OSError) as exc:
            raise translate(exc, "an asyncio call") from exc

    async def _scripts(self, calls: Iterator[list[Any]], replicated: bool,
                       woken: tuple[Sequence[str], float, Wait] | None = None) -> list[Any]:
        taken: list[list[Any]] = []
        if woken is not None and not (self.direct and self.pipelined_wait):
            queues, seconds, wait = woken
            await self.block(queues, seconds, wait)
            woken = None
        if self.direct:
            try:
                return await self._direct(calls, taken, replicated, woken)
            except _Wire as exc:
                if woken is not None:
                    # Redis may not have seen that connection close: its claim must then take
                    # nothing when the pop ends. The worker retries after its backoff.
                    await self._poke(woken[2])
                    raise translate(exc.__cause__ or exc, "waiting for work") from exc
                log.debug("a direct call failed (%s); retrying through redis-py", exc.__cause__)
        replies = []
        for args in [*taken, *calls]:
            if replicated:
                pipe = self.redis.pipeline(transaction=False)
                await self.script(keys=[self.keys.route], args=args, client=pipe)
                pipe.execute_command("WAIT", *self.calls.wait)
                reply, acked = await pipe.execute()
                _check_replicated(acked, self.settings)
            else:
                reply = await self.script(keys=[self.keys.route], args=args)
            replies.append(reply)
        return replies

    async def _open_wire(self) -> Wire:
        """A new connection for direct calls or notices: redis-py's, with this client's URL
        options, taken over (reads are bounded by ``Wire.expire_in``, not a socket timeout)."""
        pool = self.redis.connection_pool
        return await Wire.open(pool.connection_class(
            **{**pool.connection_kwargs, "socket_timeout": None}))

    async def _direct(self, calls: Iterator[list[Any]], taken: list[list[Any]],
                      replicated: bool,
                      woken: tuple[Sequence[str], float, Wait] | None = None) -> list[Any]:
        """Run ``_direct_steps`` on an idle connection of this loop (a ``wire.Wire``: redis-py
        opens it, this module reads it). The socket timeout bounds each step, not the whole
        call (a bulk enqueue has many): the connection's deadline moves on after each reply.
        A call that is cancelled or fails leaves its connection closed, never back among the
        idle ones."""
        wire: Wire | None = self._free.pop() if self._free else None
        steps = _direct_steps(self.code, calls, taken,
                              self.calls.wait_packed if replicated else None)
        limit = self.settings.socket_timeout
        clean = False
        pop: list[bytes] = []  # the blocking pop sent ahead of the first call, if any
        first_limit = limit
        if woken is not None:
            queues, seconds, wait = woken
            seconds = max(0.001, min(seconds, 20.0))
            command: Any = ("BZPOPMIN", *(self.keys.wake(q) for q in queues), wait.wake,
                            f"{seconds:.3f}")
            pop = [hiredis.pack_command(command)]
            first_limit = None if limit is None else limit + seconds
        popping = bool(pop)
        try:
            if wire is None:
                wire = await self._open_wire()
            wire.expire_in(first_limit)
            step = next(steps)
            while True:
                if step is None:
                    if popping:  # its reply comes first; what it popped does not matter
                        popped = await wire.reply()
                        popping = False
                        if isinstance(popped, BaseException):
                            # the claim behind it runs all the same; later waits pop
                            # first, through redis-py, which reports such an error
                            self.pipelined_wait = False
                            log.warning("waiting for work with a pipelined BZPOPMIN failed "
                                        "(%s); waiting without the pipeline from now on",
                                        popped)
                    step = steps.send(await wire.reply())
                    # the next step gets the whole socket timeout (not after the last
                    # reply: the send above ended the call)
                    wire.expire_in(limit)
                else:
                    await wire.send([*pop, *step])
                    pop = []
                    step = steps.send(None)
        except StopIteration as stop:
            replies: list[Any] = stop.value
            clean = True
        except _WIRE_ERRORS as exc:
            raise _Wire() from exc
        finally:
            if wire is not None:
                wire.expire_in(None)
                if clean and not self._closed:
                    self._free.append(wire)
                else:
                    wire.abort()
        return _check_replies(replies, self.settings, replicated)

    async def block(self, queues: Any, timeout: float, wait: Wait | None = None) -> None:
        """Wait up to ``timeout`` seconds for a wake marker of one of ``queues``.

        A caller that stops waiting (the worker cancels an idle exchange when a task of its
        own finishes) does not cancel the blocked command: redis-py would drop the connection,
        and a pop the server made for it would be lost. The command is left to finish; a
        marker on this connection's private key ends it at once, and a queue marker it popped
        meanwhile is put back for another worker.
        """
        if self._blocking is None:
            self._blocking = make_client(self.settings, asyncio_=True, blocking=True)
        keys = [self.keys.wake(q) for q in queues]
        private = self.private if wait is None else wait.wake
        keys.append(private)
        call = asyncio.ensure_future(
            self._blocking.bzpopmin(keys, timeout=max(0.001, min(timeout, 20.0))))
        try:
            await asyncio.shield(call)
        except asyncio.CancelledError:
            call.add_done_callback(functools.partial(self._rearm, private))
            self._pokes.add(asyncio.ensure_future(self._poke(wait)))
            raise
        except (redis.RedisError, OSError) as exc:
            raise translate(exc, "waiting for work") from exc

    async def _poke(self, wait: Wait | None = None) -> None:
        """End an abandoned wait: ``self.private``'s, or ``wait``'s, whose claim then takes
        nothing (its ``abandon`` key is set first: the claim runs as soon as the pop ends)."""
        private = self.private if wait is None else wait.wake
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                if wait is not None:
                    pipe.set(self.keys.prefix + wait.abandon, 1, px=60_000)
                pipe.zadd(private, {"p": 0})
                pipe.pexpire(private, 60_000)
                await pipe.execute()
        except (redis.RedisError, OSError) as exc:  # the pop ends by its own timeout then
            log.debug("could not end an abandoned wait: %s", exc)

    def abandon(self, wait: Wait) -> None:
        """The caller of ``run(woken=...)`` with ``wait`` stopped waiting: end the wait now,
        and have its claim take nothing (the call itself completes, and must be awaited)."""
        self._pokes = {p for p in self._pokes if not p.done()}
        self._pokes.add(asyncio.ensure_future(self._poke(wait)))

    def _rearm(self, private: str, call: asyncio.Future[Any]) -> None:
        self._pokes = {p for p in self._pokes if not p.done()}
        if call.cancelled():
            return
        if call.exception() is not None:
            log.debug("an abandoned wait failed: %s", call.exception())
            return
        popped = call.result()
        if popped and popped[0] != private:  # a queue's marker, popped for nobody
            key, member, score = popped
            self._pokes.add(asyncio.ensure_future(self._zadd(key, member, score)))

    async def _zadd(self, key: str, member: str, score: float) -> None:
        try:
            await self.redis.zadd(key, {member: score}, lt=True)
        except (redis.RedisError, OSError) as exc:
            # another idle worker may then sleep until its wait's own timeout (20 s at most)
            log.warning("could not put back a wake marker (%s); an idle worker may take up to "
                        "20 s to see a task", exc)

    # -- notifications of the final records this loop waits for, shared by its waiting calls --

    @property
    def told_of_losses(self) -> bool:
        """Whether a lost subscription here ends the waits (``_listen_direct``): not with
        redis-py's ``PubSub``, nor without pub/sub (see ``subscribed``)."""
        return self.direct and not self._polling

    async def subscribed(self) -> None:
        if not hasattr(self.redis, "pubsub"):
            # redis-py before 8: its asyncio Cluster client has no pub/sub. The waits still
            # end, by reading the record again after each pause (``core.waiting``).
            if not self._polling:
                self._polling = True
                log.warning("redis-py %s has no pub/sub for an asyncio Redis Cluster client: "
                            "waits for results read again after each pause instead of being "
                            "told (redis-py 8 or newer tells them)", redis.__version__)
            return
        if self._listener is None or self._listener.done():
            self._subscribed = asyncio.get_running_loop().create_future()
            self._listener = asyncio.ensure_future(self._listen(self._subscribed))
        assert self._subscribed is not None
        await asyncio.shield(self._subscribed)

    def expect(self, uuid: str) -> asyncio.Future[RecordRow | None]:
        future: asyncio.Future[RecordRow | None] = asyncio.get_running_loop().create_future()
        early = self.early.pop(uuid, None)
        if early is not None:  # told before anyone here waited (see _deliver)
            fresh = time.monotonic() - early[0] < _EARLY_SECONDS
            future.set_result(early[1] if fresh else None)  # None: read the record
        elif self.told.pop(uuid, None) is not None:
            future.set_result(None)
        else:
            self.waiters.setdefault(uuid, []).append(future)
        return future

    def _deliver(self, uuid: str, row: RecordRow | None) -> None:
        """A notice: to the futures waiting for it, or kept a while for one about to. A task
        can finish before its producer has read the reply to its enqueue: both replies then
        wait in this process's sockets, and the loop may read the notice first; the wait
        would then hear nothing and read the record only after its pause (up to 30 s).

        Past ``_EARLY_KEPT`` notices (many waits begun at once, as by ``asyncio.gather``), the
        oldest keeps only that it came, in ``told``: its wait then reads the record at once.
        Notices for waits that ended already (given up at their timeout) fill both, and leave
        by age and count."""
        waiting = self.waiters.pop(uuid, None)
        if waiting is None:
            now = time.monotonic()
            early, told = self.early, self.told
            early[uuid] = (now, row)
            if len(early) > _EARLY_KEPT:
                oldest = next(iter(early))
                told[oldest] = early.pop(oldest)[0]
                while told and (len(told) > _TOLD_KEPT
                                or now - next(iter(told.values())) > _TOLD_SECONDS):
                    del told[next(iter(told))]
            return
        for future in waiting:
            if not future.done():
                future.set_result(row)

    def forget(self, uuid: str, future: asyncio.Future[RecordRow | None]) -> None:
        waiting = self.waiters.get(uuid)
        if waiting is not None:
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                del self.waiters[uuid]

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        if self.direct:
            await self._listen_direct(ready)
            return
        # Subscription replies are skipped below, not by redis-py: before 8, its asyncio PubSub
        # took a sharded message for one and dropped it.
        sub: Any = None
        try:
            sub = self.redis.pubsub()
            if self.sharded is None:
                try:
                    await self.redis.execute_command("PUBSUB", "SHARDNUMSUB")
                    self.sharded = True
                except redis.ResponseError as exc:
                    self.sharded = _sharded(exc)
            channel = self.keys.final_channel(self.listener)
            if not self.sharded:  # Redis before 7.0 (the scripts fall back on PUBLISH)
                await sub.subscribe(channel)
            elif hasattr(sub, "ssubscribe"):
                await sub.ssubscribe(channel)
            else:  # redis-py before 8: its asyncio PubSub sends SSUBSCRIBE only as a command
                await sub.execute_command("SSUBSCRIBE", channel)
        except asyncio.CancelledError:
            ready.cancel()
            if sub is not None:
                await sub.aclose()
            raise
        except Exception as exc:
            _not_subscribed(ready, exc)
            if sub is not None:
                await sub.aclose()
            return
        ready.set_result(None)
        try:
            read = (self.sharded and getattr(sub, "get_sharded_message", None)) or sub.get_message
            while True:
                message = await read(ignore_subscribe_messages=False, timeout=5.0)
                if message is None:
                    continue
                if _ended(message["type"], message["data"]):
                    raise redis.ConnectionError("Redis ended the subscription")
                if message["type"] in _NOTICES:
                    self._deliver(*notice(message["data"]))
        except (redis.RedisError, OSError) as exc:
            # The connection went: waiters fall back on their pause; the next wait resubscribes.
            _lost(exc)
            self._wake_all()
        except Exception:
            log.exception("the final-record listener failed; waiters re-read their records")
            self._wake_all()
        finally:
            await sub.aclose()

    async def _listen_direct(self, ready: asyncio.Future[None]) -> None:
        """``_listen`` on a connection this module reads itself (see ``_direct``): each notice
        is handed to its waiters as it is parsed, with no task of its own to wake first."""
        wire: Wire | None = None
        try:
            wire = await self._open_wire()
            wire.expire_in(self.settings.socket_timeout)
            command: Any = ("PUBSUB", "SHARDNUMSUB")
            if self.sharded is None:
                await wire.send([hiredis.pack_command(command)])
                probe = await wire.reply()
                self.sharded = _sharded(probe if isinstance(probe, redis.ResponseError)
                                        else None)
            channel = self.keys.final_channel(self.listener)
            # Redis before 7.0 has no sharded pub/sub (the scripts fall back on PUBLISH)
            command = ("SSUBSCRIBE" if self.sharded else "SUBSCRIBE", channel)
            await wire.send([hiredis.pack_command(command)])
            confirmed = await wire.reply()
            if isinstance(confirmed, BaseException):
                raise confirmed
            wire.expire_in(None)
        except asyncio.CancelledError:
            ready.cancel()
            if wire is not None:
                wire.abort()
            raise
        except Exception as exc:
            _not_subscribed(ready, exc)
            if wire is not None:
                wire.abort()
            return

        def on_reply(message: Any) -> None:
            if isinstance(message, list) and len(message) == 3:
                if message[0] in _NOTICES:
                    self._deliver(*notice(message[2]))
                elif _ended(message[0], message[2]):
                    wire.abort()  # Redis ended it: waiters read again, the next wait resubscribes

        wire.on_reply = on_reply
        while wire.replies:  # anything that came with the confirmation
            on_reply(wire.replies.popleft())
        ready.set_result(None)
        try:
            why = await wire.wait_lost()
            # The connection went: waiters fall back on their pause; the next wait resubscribes.
            _lost(why)
        finally:
            wire.abort()
            self._wake_all()

    def _wake_all(self) -> None:
        """The subscription is gone, and notices may have gone with it: every wait reads its
        record again, the one about to begin too (``fresh`` would skip that read). Called by
        the listener's own task as it ends: forgotten now, so that a wait it wakes subscribes
        again at once instead of finding it still running."""
        self._listener = None
        self.fresh = None
        for waiting in self.waiters.values():
            for future in waiting:
                if not future.done():
                    future.set_result(None)
        self.waiters.clear()

    async def close(self) -> None:
        if self._closed:  # closed already, by the app or when its loop ended (PerLoop)
            return
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        while self._free:
            await self._free.pop().disconnect()
        if self._pokes:
            await asyncio.gather(*self._pokes, return_exceptions=True)
        if self._blocking is not None:  # only a blocking wait may have left its marker
            try:
                await self.redis.delete(self.private)
            except (redis.RedisError, OSError) as exc:
                log.debug("could not delete %s: %s", self.private, exc)
        await self.redis.aclose()
        if self._blocking is not None:
            await self._blocking.aclose()
            self._blocking = None
