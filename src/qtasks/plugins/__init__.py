"""Plugins (``BasePlugin``, see ``qtasks.plugins.base``) and QTasks' import paths for
``Depends``, ``ScopeEnum`` and the states, which in qtasks are part of the worker
(``qtasks.injection``) rather than plugins to install.
"""

from qtasks.injection import AsyncState, Depends, ScopeEnum, SyncState
from qtasks.plugins.base import BasePlugin

__all__ = ["AsyncState", "BasePlugin", "Depends", "ScopeEnum", "SyncState"]
