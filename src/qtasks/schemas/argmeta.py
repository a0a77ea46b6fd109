"""QTasks import path ``qtasks.schemas.argmeta``."""

from qtasks.compat.schemas import ArgMeta

__all__ = ["ArgMeta"]
