"""QTasks import paths for the built-in "plugins": ``Depends``, ``ScopeEnum``, the states.

In qtasks these are part of the worker (``qtasks.injection``), not plugins to install.
"""

from qtasks.injection import AsyncState, Depends, ScopeEnum, SyncState

__all__ = ["AsyncState", "Depends", "ScopeEnum", "SyncState"]
