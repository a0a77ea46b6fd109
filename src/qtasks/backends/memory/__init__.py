"""``memory://``: the in-process broker and result store (a public testing tool)."""

from qtasks.backends.memory.backend import MemoryBackend, MemoryBroker, MemoryStore, shared_state

__all__ = ["MemoryBackend", "MemoryBroker", "MemoryStore", "shared_state"]
