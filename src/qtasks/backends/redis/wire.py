"""The connections of the direct path (``AsyncConn._direct``, ``SyncConn._direct``), read
without redis-py: ``Wire`` on asyncio, ``BlockingWire`` for the sync client.

redis-py opens each connection, so the URL's TLS, credentials, database, protocol version and
client name are set up exactly as for its own commands. Then this module takes the socket's
transport over (``transport.set_protocol``) and parses what arrives with a ``hiredis.Reader``
as it arrives. A reply hands itself to the caller waiting for it from ``data_received``: no
``StreamReader``, no read lock, no timeout context per read. On this project's machines an
asyncio round trip through redis-py's connection costs 74 us, and through this one 37 us.

Read timeouts are one deadline per connection, moved on by ``expire_in`` (a float stored per
step; the timer is re-armed when it fires early, and set again when a shorter deadline follows
a longer one). A connection that times out, is closed by the server, or receives what is not
RESP fails the call waiting on it with a redis-py ``TimeoutError`` or ``ConnectionError``
(what ``_direct`` treats as a failed wire) and is closed.
Error replies come back as redis-py's exception objects (``ResponseError`` and its subclasses,
made by redis-py's own mapping), returned, not raised, as the direct path expects.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
import redis
from redis._parsers import BaseParser

_MORE = object()  # hiredis: the reply is not complete yet


def _reader(connection: Any) -> hiredis.Reader:
    """A reader for what ``connection`` (redis-py's, either flavour) receives: error replies
    as redis-py's exception objects, text decoded as the connection's encoder would."""
    encoder = connection.encoder
    options: dict[str, Any] = {"protocolError": redis.exceptions.InvalidResponse,
                               "replyError": BaseParser.parse_error,
                               "notEnoughData": _MORE}
    if encoder.decode_responses:
        options["encoding"] = encoder.encoding
        options["errors"] = encoder.encoding_errors
    return hiredis.Reader(**options)


def _where(connection: Any) -> str:
    return str(getattr(connection, "path", None) or (
        f"{getattr(connection, 'host', '?')}:{getattr(connection, 'port', '?')}"))

log = logging.getLogger("qtasks.redis")


def _kernel_timeouts(sock: Any) -> None:
    """Move a plain TCP or Unix socket's timeout into the kernel (``SO_RCVTIMEO`` and
    ``SO_SNDTIMEO``) and make the socket blocking. Python implements a socket timeout with a
    ``poll`` before each ``send`` and ``recv``: two system calls more per round trip, which
    the kernel's own timeouts spare. The kernel's timeout bounds each ``send`` and ``recv``
    call, as Python's bounds each wait; a read or send that runs out of time fails with
    ``BlockingIOError``, which ``BlockingWire`` turns into ``TimeoutError``.

    Left as it is (Python's timeout): a TLS socket, which ``ssl`` handles itself; a platform
    other than Linux, where ``timeval`` differs; a kernel that refuses the option (32-bit
    with a 64-bit ``time_t``); and a socket that stays non-blocking, as gevent's and
    eventlet's do, where a kernel timeout would never apply."""
    if not sys.platform.startswith("linux") or type(sock) is not socket.socket:
        return
    timeout = sock.gettimeout()
    if not timeout:  # None: blocking already; 0.0: non-blocking, left alone
        return
    seconds = int(timeout)
    # at least 1 us: a timeval of zero would mean no timeout at all
    micros = max(int((timeout - seconds) * 1_000_000), 0 if seconds else 1)
    timeval = struct.pack("@ll", seconds, micros)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    except OSError as exc:
        log.debug("keeping Python's socket timeout: the kernel refused its own (%s)", exc)
        return
    sock.settimeout(None)
    if not os.get_blocking(sock.fileno()):  # a green socket: its timeout is Python's only
        sock.settimeout(timeout)


class Wire(asyncio.Protocol):
    """One taken-over connection: ``send`` packed commands, ``reply`` for each in turn."""

    def __init__(self, transport: Any, reader: hiredis.Reader, where: str) -> None:
        self.transport = transport
        self.reader = reader
        self.where = where
        self.loop = asyncio.get_running_loop()
        self.replies: deque[Any] = deque()
        self.waiter: asyncio.Future[Any] | None = None
        self.error: BaseException | None = None
        self.until: float | None = None  # the read deadline (loop time), None: no deadline
        self.timer: asyncio.TimerHandle | None = None
        self.drained: asyncio.Future[None] | None = None  # set while the transport is paused
        self.streams: tuple[Any, Any] = (None, None)  # redis-py's reader and writer, held
        # set on a subscribed connection: each reply (a message) goes to it, none is queued
        self.on_reply: Callable[[Any], None] | None = None
        self.lost: asyncio.Future[None] | None = None  # see wait_lost

    @classmethod
    async def open(cls, connection: Any) -> Wire:
        """Connect redis-py's asyncio ``connection`` (its handshake included), then take its
        socket over; redis-py's object keeps nothing of it."""
        await connection.connect()
        stream, writer = connection._reader, connection._writer
        left = bytes(getattr(stream, "_buffer", b""))
        parser_reader = getattr(connection._parser, "_reader", None)
        if stream is None or writer is None or (
                parser_reader is not None and parser_reader.has_data()):
            await connection.disconnect()
            raise redis.ConnectionError("the connection could not be taken over")
        connection._reader = connection._writer = None  # redis-py must not close it now
        wire = cls(writer.transport, _reader(connection), _where(connection))
        # held: a StreamWriter that is collected closes its transport (Python 3.11.5 and later)
        wire.streams = (stream, writer)
        writer.transport.set_protocol(wire)
        if left:
            wire.data_received(left)
        is_reading = getattr(writer.transport, "is_reading", None)
        if is_reading is not None and not is_reading():
            writer.transport.resume_reading()
        return wire

    # -- the caller's side ---------------------------------------------------------------------

    async def send(self, packed: list[bytes]) -> None:
        if self.error is not None:
            raise self.error
        self.transport.writelines(packed)
        if self.drained is not None:  # the transport's buffer is full: wait for it to drain
            await asyncio.shield(self.drained)
            if self.error is not None:
                raise self.error

    async def reply(self) -> Any:
        """The next reply: a value, or an error reply as its exception (not raised)."""
        if self.replies:
            return self.replies.popleft()
        if self.error is not None:
            raise self.error
        self.waiter = waiter = self.loop.create_future()
        try:
            return await waiter
        finally:
            self.waiter = None

    def expire_in(self, seconds: float | None) -> None:
        """Fail the connection if no reply completes within ``seconds`` from now (``None``:
        no deadline). Called before each read; costs a float, and a timer now and then."""
        if seconds is None:
            self.until = None
            return
        self.until = self.loop.time() + seconds
        if self.timer is not None and self.timer.when() > self.until:
            self.timer.cancel()  # set for a longer wait (an idle worker's blocking pop)
            self.timer = None
        if self.timer is None:
            self.timer = self.loop.call_at(self.until, self._deadline)

    def abort(self) -> None:
        """Drop the connection now (a call failed or was cancelled in the middle)."""
        self._fail(redis.ConnectionError(f"Connection to {self.where} dropped"))
        self.transport.abort()

    async def wait_lost(self) -> BaseException:
        """Until the connection fails or is closed; returns why."""
        if self.error is None:
            if self.lost is None:
                self.lost = self.loop.create_future()
            await asyncio.shield(self.lost)
        assert self.error is not None
        return self.error

    async def disconnect(self) -> None:
        self._fail(redis.ConnectionError(f"Connection to {self.where} closed"))
        self.transport.close()

    # -- the transport's side ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except redis.exceptions.InvalidResponse as exc:
                self._fail(redis.ConnectionError(f"Protocol error from {self.where}: {exc}"))
                self.transport.abort()
                return
            if reply is _MORE:
                return
            if isinstance(reply, BaseException) and not isinstance(reply, redis.ResponseError):
                # an error reply redis-py raises rather than returns (too many clients, ...)
                self._fail(reply)
                self.transport.abort()
                return
            if self.on_reply is not None:
                try:
                    self.on_reply(reply)
                except Exception as exc:  # the subscriber's bug: end the subscription, say why
                    log.exception("handling a message from %s failed", self.where)
                    self._fail(exc)
                    self.transport.abort()
                    return
                continue
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(reply)
                self.waiter = None
            else:
                self.replies.append(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(redis.ConnectionError(
            f"Connection to {self.where} lost" + (f": {exc}" if exc else "")))

    def pause_writing(self) -> None:
        if self.drained is None:
            self.drained = self.loop.create_future()

    def resume_writing(self) -> None:
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _deadline(self) -> None:
        self.timer = None
        if self.until is None or self.error is not None:
            return
        if self.loop.time() < self.until:  # moved on since: wait for the new one
            self.timer = self.loop.call_at(self.until, self._deadline)
            return
        self._fail(redis.TimeoutError(f"Timeout reading from {self.where}"))
        self.transport.abort()

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(self.error)
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)  # the sender wakes, and sees the error
        lost, self.lost = self.lost, None
        if lost is not None and not lost.done():
            lost.set_result(None)


class BlockingWire:
    """A blocking connection of the sync client, opened by redis-py (handshake, TLS,
    credentials, database) and read here with a ``hiredis.Reader``, as ``Wire`` is on asyncio.
    A reply costs one ``recv_into`` a buffer this object keeps. For each message of a
    subscription, redis-py's ``PubSub`` polls the socket, checks that it is still open (a
    second poll and a peek) and sets its timeout twice; here a message costs one timeout
    change and one ``recv_into``.

    ``reply`` waits at most the socket timeout the URL sets (redis-py's ``socket_timeout``,
    kept by the kernel where it can be: ``_kernel_timeouts``); ``wait``, for a subscribed
    connection only, sets its own. A connection that fails, times
    out in a call, or receives what is not RESP must be closed (``close``): a reply still
    unread would answer the next call.
    """

    def __init__(self, connection: Any) -> None:
        connection.connect()
        sock = connection._sock
        parser_reader = getattr(connection._parser, "_reader", None)
        if sock is None or (parser_reader is not None and parser_reader.has_data()):
            connection.disconnect()
            raise redis.ConnectionError("the connection could not be taken over")
        self.connection = connection  # redis-py's object: it closes the socket (``close``)
        _kernel_timeouts(sock)
        self.sock = sock
        self.pid = os.getpid()  # a forked child opens its own
        self.closed = False
        self.reader = _reader(connection)
        self.where = _where(connection)
        # read into, and fed from, in place (hiredis takes a buffer; its stubs say bytes)
        self.buffer: Any = bytearray(65536)

    def send(self, packed: list[bytes]) -> None:
        try:
            self.sock.sendall(packed[0] if len(packed) == 1 else b"".join(packed))
        except BlockingIOError as exc:  # the kernel's timeout ran out (``_kernel_timeouts``)
            raise TimeoutError(f"Timeout writing to {self.where}") from exc

    def reply(self) -> Any:
        """The next reply: a value, or an error reply as its exception (not raised)."""
        reply = self._parsed()
        while reply is _MORE:
            self._receive()
            reply = self._parsed()
        return reply

    def wait(self, seconds: float) -> Any:
        """The next message of a subscribed connection (never nil), or ``None`` if none
        completes within ``seconds`` (what was read of one stays for the next call)."""
        reply = self._parsed()
        if reply is not _MORE:
            return reply
        deadline = time.monotonic() + seconds
        while reply is _MORE:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                self._receive()
            except TimeoutError:
                return None
            reply = self._parsed()
        return reply

    def _receive(self) -> None:
        """Read what has arrived (waiting up to the socket's timeout) into the reader."""
        try:
            got = self.sock.recv_into(self.buffer)
        except BlockingIOError as exc:  # the kernel's timeout ran out (``_kernel_timeouts``)
            raise TimeoutError(f"Timeout reading from {self.where}") from exc
        if not got:
            raise redis.ConnectionError(f"Connection to {self.where} closed by the server")
        self.reader.feed(self.buffer, 0, got)

    def _parsed(self) -> Any:
        try:
            reply = self.reader.gets()
        except redis.exceptions.InvalidResponse as exc:
            raise redis.ConnectionError(f"Protocol error from {self.where}: {exc}") from exc
        if isinstance(reply, BaseException) and not isinstance(reply, redis.ResponseError):
            raise reply  # an error reply redis-py raises rather than returns
        return reply

    def close(self) -> None:
        self.closed = True
        self.connection.disconnect()

    def usable(self) -> bool:
        """Neither closed nor inherited from the process this one was forked from."""
        return not self.closed and self.pid == os.getpid()
