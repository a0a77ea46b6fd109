"""The embedded SQLite backend (the default) and the in-process ``memory://`` backend."""

from qtasks.backends.sqlite.backend import SqliteBackend, default_database_path

__all__ = ["SqliteBackend", "default_database_path"]
