"""Database hygiene of the worker with Django on a real PostgreSQL."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import django_project_qtasks

pytest.importorskip("django")
psycopg = pytest.importorskip("psycopg")

PROJECT = Path(__file__).parent / "django_project"
ENV = {"DJANGO_SETTINGS_MODULE": "proj.settings_pg", "PYTHONPATH": str(PROJECT)}


def _postgres():
    try:
        return psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres",
                               autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise AssertionError(f"PostgreSQL at 127.0.0.1:5432 is needed in CI: {exc}") from exc
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not running: {exc}")


@pytest.fixture(scope="module")
def pg():
    conn = _postgres()
    migrate = subprocess.run([sys.executable, "-m", "django", "migrate", "--noinput"],
                             cwd=PROJECT, env={**os.environ, **ENV}, capture_output=True,
                             text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stderr
    yield conn
    conn.close()


@pytest.fixture
def app():
    app = django_project_qtasks().app
    app.flush_all()
    return app


@pytest.mark.requires_processes("the worker is the Django project's process "
                                "(DJANGO_SETTINGS_MODULE and its sys.path at start)")
@pytest.mark.parametrize("task", ["backend_pid", "abackend_pid"])
def test_a_killed_database_connection_does_not_break_the_next_task(pg, app, start_worker,
                                                                      task):
    worker = start_worker("proj.qtasks:app", "--concurrency", "1", env=ENV)
    first = app.add_task(task, timeout=20)
    assert first.status == "success", first.traceback
    with pg.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", (first.returning,))
    second = app.add_task(task, timeout=20)
    assert second.status == "success", second.traceback
    assert second.returning != first.returning
    assert "database connections are cleaned up around every task" in worker.output


@pytest.mark.requires_processes("the worker is the Django project's process "
                                "(DJANGO_SETTINGS_MODULE and its sys.path at start)")
def test_the_orm_works_in_tasks(pg, app, start_worker):
    worker = start_worker("proj.qtasks:app", env=ENV)
    assert app.add_task("count_orders", timeout=20).returning >= 0
    worker.stop()
    assert "could not close the database connections" not in worker.output


ON_COMMIT = """
import asyncio, django, logging
django.setup()
from django.db import transaction
from proj.qtasks import app
from shop.tasks import add, abackend_pid

app.flush_all()
with transaction.atomic():
    inside = add.add_task_on_commit(2, 3)
    assert inside.status == "new" and inside.uuid
    assert app.get(inside.uuid) is None, "enqueued before the commit"
assert app.get(inside.uuid).status == "new", "not enqueued after the commit"

try:
    with transaction.atomic():
        rolled = add.add_task_on_commit(1, 1)
        raise RuntimeError("roll back")
except RuntimeError:
    pass
assert app.get(rolled.uuid) is None, "enqueued although the transaction rolled back"

with transaction.atomic(using="default"):
    named = add.add_task_on_commit(5, 5, using="default")
assert app.get(named.uuid) is not None

outside = add.add_task_on_commit(7, 7)  # no transaction: at once
assert app.get(outside.uuid) is not None

from asgiref.sync import async_to_sync
from qtasks.handles import AsyncTask
ahandle = AsyncTask(task_name="add", app=app)

def in_transaction():
    # async code called from inside a transaction (the bridge Django itself uses): the
    # on-commit hook lands in the transaction's thread
    with transaction.atomic():
        record = async_to_sync(ahandle.add_task_on_commit)(4, 4)
        assert app.get(record.uuid) is None
    return record

record = in_transaction()
assert app.get(record.uuid) is not None

from django.conf import settings
settings.DEBUG = True
logging.basicConfig(level=logging.WARNING)
with transaction.atomic():
    add.add_task(1, 2)
print("ok")
"""


def test_add_task_on_commit(pg):
    result = subprocess.run([sys.executable, "-c", ON_COMMIT], cwd=PROJECT,
                            env={**os.environ, **ENV}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert "add_task('add') inside a transaction" in result.stderr
    assert "Use add_task_on_commit(...)" in result.stderr
