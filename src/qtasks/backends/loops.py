"""One asyncio client per event loop, closed when that loop ends; shared by the network backends.

A driver's asyncio connections belong to the loop that opened them, and an async app may be
used from several ``asyncio.run`` calls, so a backend keeps one client per loop. ``asyncio.run``
and ``asyncio.Runner`` close every async generator begun in their loop before closing it; each
loop's client gets one (``_close_with``) that closes it then. Without it, a program calling
``asyncio.run(app.add_task(...))`` per request opened new connections each time and kept them
(the loop's entry here held the loop alive). A loop closed another way leaves its entry, which
the next new loop drops: ``abandon(client)``, where the backend gives one, closes its sockets
without the loop; otherwise the garbage collector does.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar


class LoopClient(Protocol):
    def close(self) -> Awaitable[None]:
        """Close the client; a second call does nothing."""
        ...


C = TypeVar("C", bound=LoopClient)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class PerLoop(Generic[C]):
    """``get()``: the running loop's client, made by ``factory`` on first use there."""

    def __init__(self, factory: Callable[[], C],
                 abandon: Callable[[C], None] | None = None) -> None:
        self._factory = factory
        self._abandon = abandon
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, C] = \
            weakref.WeakKeyDictionary()
        self._ends: dict[int, Any] = {}  # id(client): its generator (the loop's ref is weak)

    def get(self) -> C:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for other in [old for old in self._clients if old.is_closed()]:
                self._forget(other, abandon=True)
            client = self._clients[loop] = self._factory()
            if self._abandon is not None:  # the loop collected, with no new loop after it
                weakref.finalize(loop, self._abandon, client)
            self._close_with(loop, client)
        return client

    def _forget(self, loop: asyncio.AbstractEventLoop, abandon: bool = False) -> C | None:
        client = self._clients.pop(loop, None)
        if client is not None:
            self._ends.pop(id(client), None)
            if abandon and self._abandon is not None:
                self._abandon(client)
        return client

    def _close_with(self, loop: asyncio.AbstractEventLoop, client: C) -> None:
        """Begin the async generator that closes ``client`` when ``loop`` finalizes it. It is
        advanced to its ``yield`` here, synchronously (beginning it is what registers it with
        the running loop), so no task is needed, and a loop that ends at once still has it."""

        async def until_the_loop_ends() -> Any:
            try:
                yield
            finally:
                if self._clients.get(loop) is client:
                    self._forget(loop)
                self._ends.pop(id(client), None)
                # Closed by its own loop (asyncio.run's end, or close() below). Collected
                # anywhere else (a loop that keeps no async generator hooks), it must not
                # await: the collector closes the sockets instead.
                if _running_loop() is loop:
                    await client.close()

        ends = self._ends[id(client)] = until_the_loop_ends()
        with contextlib.suppress(StopIteration):
            ends.asend(None).send(None)

    async def close(self) -> None:
        """Close the running loop's client now."""
        client = self._clients.get(asyncio.get_running_loop())
        if client is None:
            return
        ends = self._ends.get(id(client))
        if ends is not None:
            await ends.aclose()  # forgets and closes the client
            return
        self._forget(asyncio.get_running_loop())
        await client.close()
