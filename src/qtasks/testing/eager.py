"""The in-process worker of eager mode and the test cases; it lives in ``qtasks.worker.background``
(this name is kept for code that imported it from here)."""

from qtasks.worker.background import ensure_worker, stop_worker

__all__ = ["ensure_worker", "stop_worker"]
