"""Chains of pre-built calls: each link runs after the previous one, getting its result.

``AsyncTaskUtils.chain(add(2, 2), add(4), add(8))`` runs ``add(2, 2)``, then ``add(4, <4>)``,
then ``add(8, <8>)``: the previous link's ``returning`` is appended as the last positional
argument. ``get(timeout)`` returns one record per link. A link that does not succeed (error,
cancel, or no result within its timeout) ends the chain; the links after it are not run and
their places hold ``None``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from qtasks.handles import AsyncTaskCls, BaseTaskCls, SyncTaskCls

_Step = tuple[BaseTaskCls, tuple[Any, ...], float]


def _links(links: tuple[BaseTaskCls, ...], timeout: float) -> Generator[_Step, Any, list[Any]]:
    results: list[Any] = []
    previous: tuple[Any, ...] = ()
    for link in links:
        record = yield (link, (*link.args, *previous), link.timeout or timeout)
        results.append(record)
        if record is None or record.status != "success":
            break
        previous = (record.returning,)
    return results + [None] * (len(links) - len(results))


class SyncChain:
    def __init__(self, *links: SyncTaskCls) -> None:
        self.links = links

    def get(self, timeout: float = 50.0) -> list[Any]:
        """Run the links one after the other; one record (or None) per link."""
        steps, answer = _links(self.links, timeout), None
        try:
            while True:
                link, args, wait = steps.send(answer)
                answer = link._handle().add_task(*args, priority=link.priority, timeout=wait,
                                                 task_name=link.task_name, **link.kwargs)
        except StopIteration as stop:
            return stop.value


class AsyncChain:
    def __init__(self, *links: AsyncTaskCls) -> None:
        self.links = links

    async def get(self, timeout: float = 50.0) -> list[Any]:
        """Run the links one after the other; one record (or None) per link."""
        steps, answer = _links(self.links, timeout), None
        try:
            while True:
                link, args, wait = steps.send(answer)
                answer = await link._handle().add_task(*args, priority=link.priority,
                                                       timeout=wait, task_name=link.task_name,
                                                       **link.kwargs)
        except StopIteration as stop:
            return stop.value


class SyncTaskUtils:
    @staticmethod
    def chain(*links: SyncTaskCls) -> SyncChain:
        return SyncChain(*links)


class AsyncTaskUtils:
    @staticmethod
    def chain(*links: AsyncTaskCls) -> AsyncChain:
        return AsyncChain(*links)


__all__ = ["AsyncChain", "AsyncTaskUtils", "SyncChain", "SyncTaskUtils"]
