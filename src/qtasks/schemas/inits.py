"""QTasks import path ``qtasks.schemas.inits``."""

from qtasks.compat.schemas import InitsExecSchema

__all__ = ["InitsExecSchema"]
