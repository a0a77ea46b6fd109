"""The admin's entries for qtasks: models without tables (``managed = False``).

The qtasks section of the Django admin lists these three, with their permissions; what the
pages show comes from each configured qtasks app's own store, through ``qtasks.operator``, on
every backend (``admin.py``). No query ever touches a table for them.

The module also makes Django send this app ``post_migrate``, which creates or upgrades the
qtasks tables of PostgreSQL apps (``apps._migrate_postgres``).
"""

from __future__ import annotations

from django.db import models


class _NoTable(models.Model):
    class Meta:
        abstract = True
        managed = False
        default_permissions = ("view", "change")  # look; act (retry, cancel, requeue, purge)


class Task(_NoTable):
    class Meta(_NoTable.Meta):
        verbose_name = "task"


class DeadLetter(_NoTable):
    class Meta(_NoTable.Meta):
        verbose_name = "dead letter"


class Queue(_NoTable):
    class Meta(_NoTable.Meta):
        verbose_name = "queue"
