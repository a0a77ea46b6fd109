"""The worker: one asyncio loop per process, a thread pool for plain functions."""

from qtasks.worker.worker import Worker

__all__ = ["Worker"]
