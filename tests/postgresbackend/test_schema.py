"""The tables come from ``qtasks migrate``; without them, or at another version, the user is told
which command to run."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from conftest import TESTS
from postgresbackend.conftest import POSTGRES, url_with
from qtasks import QueueTasks
from qtasks.backends.postgres.sql import SCHEMA_VERSION, migration
from qtasks.exceptions import BackendError


@pytest.fixture
def bare_schema():
    schema = f"qt_bare_{os.getpid()}_{os.urandom(3).hex()}"
    yield schema
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qtasks", *args], capture_output=True,
                          text=True, cwd=TESTS, timeout=60)


def test_missing_tables_name_the_command_that_creates_them(bare_schema):
    app = QueueTasks(name="bare", broker_url=url_with(bare_schema))
    with pytest.raises(BackendError, match="qtasks migrate --url") as raised:
        app.add_task("anything")
    assert "are missing" in str(raised.value) and bare_schema in str(raised.value)


def test_qtasks_migrate_creates_the_tables_then_says_they_are_up_to_date(bare_schema):
    url = url_with(bare_schema)
    first = _cli("migrate", "--url", url)
    assert first.returncode == 0, first.stderr
    assert f"migrated from 0 to {SCHEMA_VERSION}" in first.stdout
    again = _cli("migrate", "--url", url)
    assert "up to date" in again.stdout
    app = QueueTasks(name="migrated", broker_url=url)
    task = app.add_task("anything")
    assert app.get(task.uuid).status == "new"


def test_qtasks_migrate_with_an_app_uses_its_urls(bare_schema, tmp_path):
    (tmp_path / "pg_migrate_app.py").write_text(
        "from qtasks import QueueTasks\n"
        f"app = QueueTasks(name='m', broker_url={url_with(bare_schema)!r})\n")
    done = subprocess.run([sys.executable, "-m", "qtasks", "-A", "pg_migrate_app:app", "migrate"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert f"schema={bare_schema}: schema version {SCHEMA_VERSION}" in done.stdout


def test_tables_of_the_first_release_are_upgraded_with_their_tasks(bare_schema):
    url = url_with(bare_schema)
    with psycopg.connect(POSTGRES, autocommit=True) as conn:  # the schema as release 1 left it
        conn.execute(f'CREATE SCHEMA "{bare_schema}"')
        for statement in [*migration(0, bare_schema),
                          f'CREATE TABLE "{bare_schema}".meta (key text PRIMARY KEY, '
                          "value text NOT NULL)",
                          f"INSERT INTO \"{bare_schema}\".meta VALUES ('schema_version', '1')"]:
            conn.execute(statement)
    with pytest.raises(BackendError, match="version 1, this release needs"):
        QueueTasks(name="v1", broker_url=url).add_task("anything")
    done = _cli("migrate", "--url", url)
    assert done.returncode == 0, done.stderr
    assert f"migrated from 1 to {SCHEMA_VERSION}" in done.stdout
    app = QueueTasks(name="v1", broker_url=url)
    tasks = [app.add_task("anything", i) for i in range(3)]
    assert [r["uuid"] for r in app.client.search(task_name="anything")] == \
        [str(t.uuid) for t in tasks[::-1]]


def test_tables_of_an_older_version_ask_for_an_upgrade(bare_schema):
    url = url_with(bare_schema)
    assert _cli("migrate", "--url", url).returncode == 0
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"UPDATE \"{bare_schema}\".meta SET value = '0' "
                     "WHERE key = 'schema_version'")
    app = QueueTasks(name="old", broker_url=url)
    with pytest.raises(BackendError,
                       match=f"version 0, this release needs {SCHEMA_VERSION}; upgrade them"):
        app.add_task("anything")


def test_a_bad_schema_name_is_refused_before_any_connection():
    with pytest.raises(BackendError, match="schema 'Robert; DROP'"):
        QueueTasks(name="x", broker_url=f"{POSTGRES}?schema=Robert; DROP").add_task("x")


def test_the_password_never_shows(bare_schema):
    url = "postgresql://postgres:hunter2@127.0.0.1:1/test"
    app = QueueTasks(name="secret", broker_url=url)
    with pytest.raises(BackendError) as raised:
        app.add_task("anything")
    assert "hunter2" not in str(raised.value)
    assert "hunter2" not in app.backend.describe() and "hunter2" not in repr(app.backend)
    # the reprs a debugger or an error tracker shows of the objects the backend holds
    for text in [repr(app.config)] + [repr(v) for v in vars(app.backend).values()
                                      if not isinstance(v, str)]:
        assert "hunter2" not in text, text
    done = _cli("migrate", "--url", url)
    assert done.returncode == 2 and "hunter2" not in done.stdout + done.stderr


DJANGO_MIGRATE = """
import sys
import django
from django.conf import settings

settings.configure(
    DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "test",
                           "HOST": "127.0.0.1", "PORT": "5432", "USER": "postgres"}},
    INSTALLED_APPS=["qtasks.contrib.django"],
    QTASKS={"default": {"BROKER_URL": sys.argv[1], "NAME": "djm", "AUTODISCOVER": False}})
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=1)
from qtasks.contrib.django.apps import get_app
print(get_app().add_task("anything").status)
"""


def test_manage_py_migrate_creates_the_tables_of_a_postgres_app(bare_schema):
    done = subprocess.run([sys.executable, "-c", DJANGO_MIGRATE, url_with(bare_schema)],
                          capture_output=True, text=True, cwd=TESTS, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"migrated from schema version 0 to {SCHEMA_VERSION}" in done.stdout
    assert done.stdout.strip().endswith("new")


def test_libpq_options_with_spaces_reach_the_server(bare_schema):
    """``options=-c name=value`` (a space, percent-encoded) is passed to libpq as written."""
    url = (f"{url_with(bare_schema)}&options=-c%20statement_timeout%3D4321"
           "&application_name=qtasks%20test")
    assert _cli("migrate", "--url", url).returncode == 0
    app = QueueTasks(name="opts", broker_url=url)
    task = app.add_task("anything", 1)
    assert app.get(task.uuid).args == (1,)
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        seen = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                            "'qtasks test'").fetchone()
    assert seen == (1,)  # the app's own connection, named as the URL says
