"""The admin's entries for qtasks: models without tables (``managed = False``).

The qtasks section of the Django admin lists these three, with their permissions; what the
pages show comes from each configured qtasks app's own store, through ``qtasks.operator``, on
every backend (``admin.py``). No query ever touches a table for them.

The module also makes Django send this app ``post_migrate``, which creates or upgrades the
qtasks tables of PostgreSQL apps (``apps._migrate_postgres``).
"""

from __future__ import annotations

from django.db import models


class Task(models.Model):
    class Meta:
        managed = False
        verbose_name = "task"
        verbose_name_plural = "tasks"
        default_permissions = ("view", "change")


class DeadLetter(models.Model):
    class Meta:
        managed = False
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters"
        default_permissions = ("view", "change")


class Queue(models.Model):
    class Meta:
        managed = False
        verbose_name = "queue"
        verbose_name_plural = "queues"
        default_permissions = ("view", "change")
