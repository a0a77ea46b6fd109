"""``Depends`` and the states (``SyncState``/``AsyncState``): the public names of dependency
injection, which lives in ``qtasks.core.injection``."""

from qtasks.core.injection import (
    AsyncState,
    Depends,
    Injection,
    Scope,
    ScopeEnum,
    SyncState,
    inject,
    plan_injections,
)

__all__ = ["AsyncState", "Depends", "Injection", "Scope", "ScopeEnum", "SyncState", "inject",
           "plan_injections"]
