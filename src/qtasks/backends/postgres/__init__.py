"""PostgreSQL: broker and result store in the database you already run (``qtasks[postgres]``)."""

from qtasks.backends.postgres.backend import PostgresBackend, enqueue_in
from qtasks.backends.postgres.connection import migrate

__all__ = ["PostgresBackend", "enqueue_in", "migrate"]
