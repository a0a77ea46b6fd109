"""QTasks import path ``qtasks.tests``: ``SyncTestCase`` and ``AsyncTestCase``."""

from qtasks.testing import AsyncTestCase, SyncTestCase, TestConfig

__all__ = ["AsyncTestCase", "SyncTestCase", "TestConfig"]
