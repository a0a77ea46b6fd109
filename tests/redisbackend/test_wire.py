"""The asyncio direct path's connections (``backends/redis/wire.py``) time out on a stalled
Redis after the deadline of the call being read, even when a longer one came before it (an
idle worker's blocking pop sets one 20 s out; its next call on the connection must not inherit
it)."""

from __future__ import annotations

import asyncio
import signal
import time

import hiredis
import redis
import redis.asyncio as aredis

from qtasks.backends.redis.wire import Wire


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
