"""QTasks import path ``qtasks.schemas.test.TestConfig``."""

from qtasks.testing import TestConfig

__all__ = ["TestConfig"]
