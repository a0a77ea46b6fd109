"""The direct path's connections (``backends/redis/wire.py``) time out on a stalled Redis.

On asyncio, after the deadline of the call being read, even when a longer one came before it
(an idle worker's blocking pop sets one 20 s out; its next call on the connection must not
inherit it). The sync client's ``BlockingWire`` after the URL's ``socket_timeout``, which the
kernel keeps, and a wire opened before a fork is not used by the child."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import hiredis
import redis
import redis.asyncio as aredis

from qtasks.backends.redis.wire import BlockingWire, Wire, _kernel_timeouts


def test_a_short_deadline_after_a_long_one_still_times_out_in_time(redis_server):
    async def stalled_ping() -> tuple[type[BaseException], float]:
        client = aredis.Redis.from_url(redis_server.url, decode_responses=True)
        pool = client.connection_pool
        wire = await Wire.open(pool.connection_class(
            **{**pool.connection_kwargs, "socket_timeout": None}))
        await wire.send([hiredis.pack_command(("PING",))])
        wire.expire_in(25.0)  # a long wait, answered at once
        assert await wire.reply() == "PONG"
        wire.expire_in(None)
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            began = time.monotonic()
            wire.expire_in(1.0)
            await wire.send([hiredis.pack_command(("PING",))])
            try:
                await wire.reply()
            except redis.TimeoutError as exc:
                return type(exc), time.monotonic() - began
            raise AssertionError("a stalled Redis answered")
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
            await client.aclose()

    kind, took = asyncio.run(stalled_ping())
    assert kind is redis.TimeoutError
    assert took < 15  # the 1 s deadline, not the 25 s one before it


def _ping_stalled(wire: BlockingWire, redis_server) -> tuple[TimeoutError, float]:
    """PING a Redis stopped with SIGSTOP through ``wire`` (closed after): the timeout error,
    and how long it took to come."""
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        began = time.monotonic()
        wire.send([hiredis.pack_command(("PING",))])
        try:
            wire.reply()
        except TimeoutError as exc:
            return exc, time.monotonic() - began
        raise AssertionError("a stalled Redis answered")
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
        wire.close()


def test_a_blocking_wire_times_out_on_a_stalled_redis_after_the_socket_timeout(redis_server):
    client = redis.Redis.from_url(redis_server.url + "?socket_timeout=1", decode_responses=True)
    pool = client.connection_pool
    wire = BlockingWire(pool.connection_class(**pool.connection_kwargs))
    wire.send([hiredis.pack_command(("PING",))])
    assert wire.reply() == "PONG"
    client.close()
    error, took = _ping_stalled(wire, redis_server)
    assert "Timeout reading from" in str(error)
    assert 0.5 < took < 15  # the URL's 1 s, not a hang and not at once


def test_a_blocking_wire_opened_before_a_fork_is_not_the_child_s(redis_server):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    pool = client.connection_pool
    wire = BlockingWire(pool.connection_class(**pool.connection_kwargs))
    assert wire.usable()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's answer goes through the pipe
        try:
            os.write(write, b"usable" if wire.usable() else b"not usable")
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(child, 0)
    assert answer == b"not usable"
    assert wire.usable()  # still the parent's
    wire.close()
    assert not wire.usable()
    client.close()


def test_a_timeout_below_a_microsecond_still_times_out(redis_server):
    # The kernel reads a zero timeval as "no timeout": the smallest timeout must not become one.
    # (opened with a usable timeout: a handshake cannot finish in 0.1 us)
    client = redis.Redis.from_url(redis_server.url + "?socket_timeout=5")
    pool = client.connection_pool
    wire = BlockingWire(pool.connection_class(**pool.connection_kwargs))
    client.close()
    wire.sock.settimeout(0.0000001)  # what redis-py would have set for this URL's timeout
    _kernel_timeouts(wire.sock)
    _, took = _ping_stalled(wire, redis_server)
    assert took < 5


def test_a_socket_that_stays_non_blocking_keeps_python_s_timeout(monkeypatch):
    # gevent's and eventlet's sockets stay non-blocking whatever their timeout: a kernel
    # timeout would never apply to them, so Python's must stay.
    import qtasks.backends.redis.wire as wire_module

    left, right = socket.socketpair()
    try:
        left.settimeout(1.5)
        monkeypatch.setattr(wire_module.os, "get_blocking", lambda fd: False)
        _kernel_timeouts(left)
        assert left.gettimeout() == 1.5
        monkeypatch.undo()
        _kernel_timeouts(left)  # a plain socket: the kernel keeps the timeout
        assert left.gettimeout() is None
        assert os.get_blocking(left.fileno())
    finally:
        left.close()
        right.close()
