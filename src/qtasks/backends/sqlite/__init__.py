"""The embedded SQLite backend: the default, broker and result store in one file."""

from qtasks.backends.sqlite.backend import SqliteBackend, default_database_path

__all__ = ["SqliteBackend", "default_database_path"]
