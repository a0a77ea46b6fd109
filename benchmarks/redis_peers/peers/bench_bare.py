"""bare: no framework, the least a Redis queue can do with these tasks; a ceiling, not a peer.

A message is a JSON object (``{"f": name, "a": args}``, and ``"r"``: a reply key for the
result-API round trip) appended to one list with ``RPUSH``; a bulk enqueue is one ``RPUSH``
of the whole batch. The worker is one asyncio loop: it takes up to ``concurrency`` (10)
messages per ``LPOP``, blocks on ``BLPOP`` when the list is empty, and runs each body as an
asyncio task, at most ``concurrency`` at once. A result is ``RPUSH``ed to its reply key,
which the producer ``BLPOP``s.

Nothing is acknowledged, leased, recorded or retried: a worker that dies loses what it
popped. What this row measures is the cost of the round trips and of the task bodies alone
(redis-py and asyncio included), so the gap between it and any queue's row is what that
queue adds, and no queue on this protocol can beat it by much.
"""

import asyncio
import json
import uuid

import bench_common as c

QUEUE = "bare:q"
REPLY_PREFIX = "bare:r:"


async def noop() -> None:
    return None


FUNCTIONS = {"bump": c.bump_async, "noop": noop, "side": c.side_async, "nap": c.nap_async}


def _message(name: str, *args: str, reply: str = "") -> bytes:
    body: dict = {"f": name, "a": list(args)}
    if reply:
        body["r"] = reply
    return json.dumps(body).encode()


class BarePeer(c.Peer):
    packages = ["redis", "hiredis"]

    def single(self):
        c.sync_redis().rpush(QUEUE, _message("bump"))

    def bulk(self, k):
        message = _message("bump")
        c.sync_redis().rpush(QUEUE, *([message] * k))

    def nap(self):
        c.sync_redis().rpush(QUEUE, _message("nap"))

    def side(self, key):
        c.sync_redis().rpush(QUEUE, _message("side", key))

    def result(self):
        reply = REPLY_PREFIX + uuid.uuid4().hex
        c.sync_redis().rpush(QUEUE, _message("noop", reply=reply))
        if c.sync_redis().blpop([reply], timeout=c.WAIT_TIMEOUT) is None:
            raise TimeoutError(f"no reply within {c.WAIT_TIMEOUT} s")

    async def worker(self):
        client = c.async_redis()
        limit = c.CONCURRENCY or 10
        free = asyncio.Semaphore(limit)
        running: set[asyncio.Task] = set()

        async def run(raw: bytes) -> None:
            try:
                message = json.loads(raw)
                value = await FUNCTIONS[message["f"]](*message["a"])
                if "r" in message:
                    await client.rpush(message["r"], json.dumps(value))
            finally:
                free.release()

        while True:
            batch = await client.lpop(QUEUE, limit)
            if not batch:
                popped = await client.blpop([QUEUE], timeout=1)
                if popped is None:
                    continue
                batch = [popped[1]]
            for raw in batch:
                await free.acquire()
                task = asyncio.create_task(run(raw))
                running.add(task)
                task.add_done_callback(running.discard)


PEER = BarePeer()
