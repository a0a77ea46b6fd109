"""Database hygiene of the worker with Django on a real PostgreSQL."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    import importlib

    sys.path.insert(0, str(PROJECT))
    try:
        module = importlib.import_module("proj.qtasks")
    finally:
        sys.path.remove(str(PROJECT))
    module.app.flush_all()
    return module.app


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


def test_the_orm_works_in_tasks(pg, app, start_worker):
    worker = start_worker("proj.qtasks:app", env=ENV)
    assert app.add_task("count_orders", timeout=20).returning >= 0
    worker.stop()
    assert "could not close the database connections" not in worker.output
