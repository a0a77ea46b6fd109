"""Django's task framework (``@task``, ``Task.enqueue``) on Django 5.2 through the ``django-tasks``
backport, with the ``DatabaseBackend`` of ``django-tasks-db`` (since django-tasks 0.12.0 the
database backend is that separate distribution: app ``django_tasks_db``, backend
``django_tasks_db.DatabaseBackend``) on PostgreSQL via psycopg 3. Settings:
``bench_djangotasks_settings.py`` next to this file.

pins: Django==5.2.19 django-tasks==0.12.0 django-tasks-db[compat]==0.13.0
psycopg[binary]==3.3.9 redis==8.1.0 hiredis==3.5.0

- install: ``migrate`` (one table, ``django_tasks_database_dbtaskresult``, the name kept from
  django-tasks, with its indexes; and ``django_migrations``).
- worker: ``python -m django db_worker --verbosity 0`` (the CLI has -v 0, CRITICAL, or -v 1,
  INFO with two lines per task; no WARNING). One process that runs one task at a time: it
  has no thread or concurrency option, so BENCH_CONCURRENCY is ignored and ``naps`` is n/a.
  It claims a task with ``SELECT ... FOR UPDATE SKIP LOCKED`` and, only when it found none,
  sleeps ``--interval``, default 1 s (kept: an idle worker picks up a new task 0-1 s later);
  it also sleeps a random 0-1 s once at start-up (``--no-startup-delay`` not given). With
  Django's default ``CONN_MAX_AGE=0`` it closes its connection around every task
  (``close_old_connections``), so each task opens a new PostgreSQL connection;
  BENCH_VARIANT=persistent sets ``CONN_MAX_AGE=None`` instead.
- bulk: n/a, the Task API enqueues one task per call (one INSERT, autocommit).
- result: ``TaskResult.refresh()`` (one SELECT by primary key) polled every 10 ms, this
  adapter's choice (the API has no blocking wait), until finished, at most WAIT_TIMEOUT.
- Every task keeps its row (status, return value) after it ran, as results.
"""

import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench_djangotasks_settings")

import django
from django.apps import apps

if not apps.ready:  # already set up when the db_worker process imports the tasks
    django.setup()

import bench_common as c
from django_tasks import TaskResultStatus, task

RESULT_POLL = 0.01  # seconds between two TaskResult.refresh() calls in result()


@task()
def bump() -> None:
    c.bump_sync()


@task()
def noop() -> None:
    return None


@task()
def side(key: str) -> None:
    c.side_sync(key)


@task()
def nap() -> None:
    c.nap_sync()


class DjangoTasksPeer(c.Peer):
    packages = ["Django", "django-tasks", "django-tasks-db", "psycopg", "psycopg-binary",
                "redis", "hiredis"]

    def install(self):
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    def single(self):
        bump.enqueue()

    def bulk(self, k):
        raise c.NotAvailable("Django's Task API has no bulk enqueue (one enqueue() per task)")

    def nap(self):
        nap.enqueue()

    def check_naps(self):
        raise c.NotAvailable("db_worker runs one task at a time (no thread/concurrency option)")

    def side(self, key):
        side.enqueue(key)

    def result(self):
        res = noop.enqueue()
        deadline = time.monotonic() + c.WAIT_TIMEOUT
        while True:
            res.refresh()
            if res.status == TaskResultStatus.SUCCESSFUL:
                return res.return_value
            if res.status == TaskResultStatus.FAILED:
                raise RuntimeError(f"django task failed: {res.errors}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"django task still {res.status} after {c.WAIT_TIMEOUT} s")
            time.sleep(RESULT_POLL)

    def worker(self):
        c.exec_worker([sys.executable, "-m", "django", "db_worker", "--verbosity", "0"])


PEER = DjangoTasksPeer()
