"""The overview's charts: tasks finished and failed per minute, and their mean run time.

Workers report running totals with each heartbeat (``WorkerRow.finished``, ``failed``,
``busy_seconds``). The dashboard reads them now and then and adds what each worker did since
its previous reading into the current minute. So the charts cover the time this dashboard has
been watching, up to the last hour, on every backend, and cost the store nothing per task.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from qtasks.backends.base import WorkerRow


@dataclass(slots=True)
class Minute:
    start: int  # epoch seconds, a multiple of 60
    finished: int = 0
    failed: int = 0
    busy_seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        mean = self.busy_seconds / self.finished if self.finished else 0.0
        return {"t": self.start, "finished": self.finished, "failed": self.failed,
                "mean_seconds": round(mean, 6)}


class History:
    """Per-minute totals over the last ``minutes``, built from successive worker readings."""

    def __init__(self, minutes: int = 60, started: float | None = None) -> None:
        self.minutes = minutes
        self.started = time.time() if started is None else started
        self._buckets: deque[Minute] = deque(maxlen=minutes)
        self._seen: dict[str, tuple[int, int, float]] = {}
        self.last_reading = 0.0

    def observe(self, workers: Iterable[WorkerRow], now: float | None = None) -> None:
        now = time.time() if now is None else now
        bucket = self._bucket(now)
        seen: dict[str, tuple[int, int, float]] = {}
        for w in workers:
            totals = (w.finished, w.failed, w.busy_seconds)
            seen[w.id] = totals
            before = self._seen.get(w.id)
            if before is None:
                # a worker that started while we watched: all it did is new; one that was
                # there before we started: only what it does from now on is counted
                if w.started_at < self.started:
                    continue
                before = (0, 0, 0.0)
            if totals[0] < before[0]:  # the same id counting from zero again: a new process
                before = (0, 0, 0.0)
            bucket.finished += totals[0] - before[0]
            bucket.failed += totals[1] - before[1]
            bucket.busy_seconds += totals[2] - before[2]
        self._seen = seen
        self.last_reading = now

    def _bucket(self, now: float) -> Minute:
        start = int(now // 60) * 60
        if not self._buckets or self._buckets[-1].start < start:
            self._buckets.append(Minute(start))
        return self._buckets[-1]

    def series(self, now: float | None = None) -> list[dict[str, float]]:
        """One entry a minute for the last ``minutes`` (empty minutes as zeros), oldest first."""
        now = time.time() if now is None else now
        last = int(now // 60) * 60
        by_start = {m.start: m for m in self._buckets}
        return [(by_start.get(t) or Minute(t)).as_dict()
                for t in range(last - 60 * (self.minutes - 1), last + 1, 60)]
