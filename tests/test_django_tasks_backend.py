"""Django's task framework on qtasks: ``@task`` functions enqueued by Django, run by a worker.

Django 6 brings ``django.tasks``; on Django 5.2 the ``django-tasks`` backport stands in (the
test extra installs it on Python 3.11). The producer is a Django process (a script), the
worker a real ``qtasks run`` process of the same project.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import django_project_qtasks

django = pytest.importorskip("django")

if django.VERSION < (6, 0):
    try:
        import django_tasks  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise AssertionError("CI needs django-tasks (the backport) on Django < 6") from None
        pytest.skip("django.tasks needs Django 6 or the django-tasks backport",
                    allow_module_level=True)

PROJECT = Path(__file__).parent / "django_project"
ENV = {"DJANGO_SETTINGS_MODULE": "proj.settings_tasks", "PYTHONPATH": str(PROJECT)}
LOG = Path(os.environ["QTASKS_TEST_DIR"]) / "mailing.log"

PRELUDE = """
import asyncio, json, time
from datetime import timedelta
import django
django.setup()
from django.utils import timezone
from mailing import tasks as T

def finish(result, timeout=20):
    deadline = time.monotonic() + timeout
    while not result.is_finished:
        assert time.monotonic() < deadline, f"{result.id} unfinished: {result.status}"
        time.sleep(0.05)
        result.refresh()
    return result

def show(result):
    return {"id": result.id, "status": str(result.status), "attempts": result.attempts,
            "worker_ids": result.worker_ids,
            "value": result.return_value if result.status == "SUCCESSFUL" else None,
            "errors": [[e.exception_class_path, e.traceback] for e in result.errors],
            "times": [result.enqueued_at.timestamp(), result.started_at.timestamp(),
                      result.finished_at.timestamp(), result.last_attempted_at.timestamp()]
                     if result.is_finished else None}
"""


def django_script(body: str, **env: str) -> dict:
    """Run ``body`` in a Django process of the test project; it prints one JSON document."""
    code = PRELUDE + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT,
                          env={**os.environ, **ENV, **env}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def log_lines(result_id: str) -> list[str]:
    return [line for line in LOG.read_text().splitlines() if result_id in line]


def worker_lines(result_id: str) -> list[str]:
    """The lines the worker's signals wrote, in their order."""
    return [line for line in log_lines(result_id) if not line.startswith("enqueued ")]


@pytest.fixture(scope="module")
def project():
    migrate = subprocess.run([sys.executable, "-m", "django", "migrate", "--noinput"],
                             cwd=PROJECT, env={**os.environ, **ENV}, capture_output=True,
                             text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stderr


@pytest.fixture
def app(project):
    app = django_project_qtasks().app
    app.flush_all()
    return app


@pytest.mark.requires_processes("the worker is the Django project's process "
                                "(DJANGO_SETTINGS_MODULE and its sys.path at start)")
def test_django_tasks_run_on_a_qtasks_worker(app, start_worker):
    start_worker("proj.qtasks:app", "--queues", "default,emails", env=ENV)
    out = django_script("""
        ok = finish(T.add.enqueue(2, 3))
        failed = finish(T.fail.enqueue("boom"))
        ctx = finish(T.whoami.using(priority=7).enqueue("x"))
        orm = finish(T.count_orders.enqueue())
        mail = finish(T.send.enqueue("ann@example.com"))
        from mailing.early import early_add
        early = finish(early_add.enqueue(20, 22))

        async def run_async():
            result = await T.aadd.aenqueue(4, 5)
            while not result.is_finished:
                await asyncio.sleep(0.05)
                await result.arefresh()
            again = await T.aadd.aget_result(result.id)
            return result, again

        aresult, again = asyncio.run(run_async())
        fetched = T.add.get_result(ok.id)
        print(json.dumps({
            "ok": show(ok), "failed": show(failed), "ctx": show(ctx), "orm": show(orm),
            "mail": show(mail), "early": show(early), "async": show(aresult),
            "async_again": show(again), "fetched": show(fetched),
            "fetched_task": [fetched.task.module_path, fetched.task.priority,
                             fetched.task.queue_name, fetched.backend],
            "exception": failed.errors[0].exception_class.__name__,
        }))
    """)
    ok = out["ok"]
    assert ok["status"] == "SUCCESSFUL" and ok["value"] == 5 and ok["attempts"] == 1
    enqueued, started, finished, attempted = ok["times"]
    assert enqueued <= started <= finished and attempted == started
    assert out["fetched"] == ok
    assert out["fetched_task"] == ["mailing.tasks.add", 0, "default", "default"]

    failed = out["failed"]
    assert failed["status"] == "FAILED" and out["exception"] == "ValueError"
    [(path, text)] = failed["errors"]
    assert path == "builtins.ValueError" and "ValueError: boom" in text

    inside = out["ctx"]["value"]  # what the task saw through its TaskContext
    assert inside["id"] == out["ctx"]["id"] and inside["attempt"] == 1
    assert inside["priority"] == 7 and inside["status"] == "RUNNING"
    assert inside["worker_ids"] == out["ctx"]["worker_ids"] and len(inside["worker_ids"]) == 1

    assert out["orm"]["status"] == "SUCCESSFUL" and isinstance(out["orm"]["value"], int)
    assert out["mail"]["value"] == "sent to ann@example.com"  # the "emails" queue
    assert out["early"]["value"] == 42  # defined while models loaded, before qtasks was ready
    assert out["async"]["value"] == 9 and out["async_again"] == out["async"]

    # signals: task_enqueued in the producer, task_started / task_finished in the worker. The
    # producer sends its signal once the enqueue is acknowledged, and the worker may have run
    # the task by then (as with any Django backend whose workers see a task at once): nothing
    # orders the producer's line and the worker's, only the worker's among themselves.
    assert sorted(log_lines(ok["id"])) == [f"enqueued {ok['id']} READY",
                                           f"finished {ok['id']} SUCCESSFUL",
                                           f"started {ok['id']} RUNNING QTasksBackend"]
    assert worker_lines(ok["id"]) == [f"started {ok['id']} RUNNING QTasksBackend",
                                      f"finished {ok['id']} SUCCESSFUL"]
    assert worker_lines(failed["id"])[-1] == f"finished {failed['id']} FAILED"
    assert worker_lines(out["async"]["id"])[-1] == f"finished {out['async']['id']} SUCCESSFUL"
    assert f"enqueued {out['async']['id']} READY" in log_lines(out["async"]["id"])


@pytest.mark.requires_processes("the worker is the Django project's process "
                                "(DJANGO_SETTINGS_MODULE and its sys.path at start)")
def test_django_priorities_run_larger_first(app, start_worker):
    labels = [f"p{time.monotonic_ns()}-{i}" for i in range(5)]
    django_script(f"""
        labels = {labels!r}
        for label, priority in zip(labels, [-10, 50, 0, 100, 50]):
            T.ranked.using(priority=priority).enqueue(label)
        print("{{}}")
    """)
    start_worker("proj.qtasks:app", "--concurrency", "1", env=ENV)
    deadline = time.monotonic() + 20
    while sum(f"ran {label}" in LOG.read_text() for label in labels) < 5:
        assert time.monotonic() < deadline, LOG.read_text()
        time.sleep(0.05)
    ran = [line.split()[1] for line in LOG.read_text().splitlines()
           if line.startswith("ran ") and line.split()[1] in labels]
    # 100, then the two 50s in enqueue order, then 0, then -10
    assert ran == [labels[3], labels[1], labels[4], labels[2], labels[0]]


@pytest.mark.requires_processes("the worker is the Django project's process "
                                "(DJANGO_SETTINGS_MODULE and its sys.path at start)")
def test_run_after_delays_the_task(app, start_worker):
    start_worker("proj.qtasks:app", env=ENV)
    out = django_script("""
        when = timezone.now() + timedelta(seconds=1.5)
        result = T.add.using(run_after=when).enqueue(1, 1)
        time.sleep(0.5)
        result.refresh()
        early = str(result.status)
        finish(result)
        print(json.dumps({"early": early, "run_after": result.task.run_after.timestamp(),
                          "started": result.started_at.timestamp(), "value": result.return_value}))
    """)
    assert out["early"] == "READY" and out["value"] == 2
    assert out["started"] >= out["run_after"]


def test_results_that_do_not_exist_and_bad_options(app):
    native = app.add_task("add", 1, 2)  # a qtasks task, not a django.tasks one
    out = django_script(f"""
        from django.core.exceptions import ImproperlyConfigured
        from qtasks.contrib.django.backend import QTasksBackend
        try:
            from django.tasks.exceptions import TaskResultDoesNotExist
        except ImportError:
            from django_tasks.exceptions import TaskResultDoesNotExist
        seen = {{}}
        for key, result_id in [("unknown", "00000000-0000-4000-8000-000000000000"),
                               ("malformed", "not-a-uuid"), ("native", "{native.uuid}")]:
            try:
                T.add.get_result(result_id)
            except TaskResultDoesNotExist as exc:
                seen[key] = str(exc)
        try:
            QTasksBackend("bad", {{"OPTIONS": {{"NOPE": 1}}}})
        except ImproperlyConfigured as exc:
            seen["options"] = str(exc)
        missing = QTasksBackend("missing", {{"OPTIONS": {{"APP": "nosuch"}}}})
        seen["check"] = [str(message) for message in missing.check()]
        print(json.dumps(seen))
    """)
    assert set(out) == {"unknown", "malformed", "native", "options", "check"}
    assert "which is not a django.tasks task known to this process" in out["native"]
    assert "unknown keys ['NOPE']" in out["options"]
    assert "qtasks app 'nosuch', which is not in settings.QTASKS" in out["check"][0]


def test_enqueue_on_commit_returns_the_id_and_enqueues_at_commit(app):
    out = django_script("""
        from django.db import transaction
        try:
            from django.tasks.exceptions import TaskResultDoesNotExist
        except ImportError:
            from django_tasks.exceptions import TaskResultDoesNotExist

        def exists(result_id):
            try:
                T.add.using(backend="oncommit").get_result(result_id)
                return True
            except TaskResultDoesNotExist:
                return False

        late = T.add.using(backend="oncommit")
        with transaction.atomic():
            inside = late.enqueue(1, 2)
            before = exists(inside.id)
        after = exists(inside.id)
        try:
            with transaction.atomic():
                rolled = late.enqueue(3, 4)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        print(json.dumps({"id": inside.id, "status": str(inside.status), "before": before,
                          "after": after, "rolled": rolled.id,
                          "rolled_exists": exists(rolled.id)}))
    """)
    assert out["status"] == "READY" and out["id"]
    assert out["before"] is False and out["after"] is True and out["rolled_exists"] is False
    assert log_lines(out["id"]) == [f"enqueued {out['id']} READY"]  # sent at the commit
    assert log_lines(out["rolled"]) == []


def test_immediate_mode_runs_django_tasks_inline(app):
    out = django_script("""
        from django.db import transaction
        try:
            from django.tasks.exceptions import TaskResultDoesNotExist
        except ImportError:
            from django_tasks.exceptions import TaskResultDoesNotExist
        from shop.tasks import add as native

        ok = T.add.enqueue(2, 2)
        failed = T.fail.enqueue("inline")
        again = T.add.get_result(ok.id)
        with transaction.atomic():  # ENQUEUE_ON_COMMIT: it runs at the commit
            late = T.add.using(backend="oncommit").enqueue(3, 3)
            try:
                T.add.get_result(late.id)
                ran_early = True
            except TaskResultDoesNotExist:
                ran_early = False
            native.add_task_on_commit(1, 1)
        done = T.add.get_result(late.id)
        print(json.dumps({"ok": show(ok), "failed": show(failed), "again": show(again),
                          "late": str(late.status), "ran_early": ran_early,
                          "done": show(done)}))
    """, TEST_QTASKS_IMMEDIATE="1")
    ok = out["ok"]
    assert ok["status"] == "SUCCESSFUL" and ok["value"] == 4 and out["again"] == ok
    assert out["failed"]["status"] == "FAILED" and "inline" in out["failed"]["errors"][0][1]
    assert [line.split()[0] for line in log_lines(ok["id"])] == ["enqueued", "started",
                                                                 "finished"]
    assert out["late"] == "READY" and out["ran_early"] is False
    assert out["done"]["value"] == 6
    assert [line.split()[0] for line in log_lines(out["done"]["id"])] == [
        "enqueued", "started", "finished"]
    assert app.stats().queued == 0  # nothing went to the backend, on-commit included


def test_manage_py_worker_takes_the_queues_it_is_given(app):
    import signal

    inspect = subprocess.run([sys.executable, "manage.py", "qtasks", "inspect"], cwd=PROJECT,
                             env={**os.environ, **ENV}, capture_output=True, text=True,
                             timeout=60)
    assert inspect.returncode == 0, inspect.stderr
    assert "task mailing.tasks.send (mailing.tasks.send, priority 0, queue emails)" in (
        inspect.stdout)
    log = Path(os.environ["QTASKS_TEST_DIR"]) / "manage-queues.log"
    with open(log, "wb") as output:
        worker = subprocess.Popen([sys.executable, "manage.py", "qtasks", "worker", "--noreload",
                                   "--queues", "emails"], cwd=PROJECT,
                                  env={**os.environ, **ENV}, stdout=output,
                                  stderr=subprocess.STDOUT)
        try:
            out = django_script("""
                mail = finish(T.send.enqueue("bo@example.com"))
                other = T.add.enqueue(1, 1)
                time.sleep(1.0)
                other.refresh()
                print(json.dumps({"mail": mail.return_value, "other": str(other.status)}))
            """)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
    assert out == {"mail": "sent to bo@example.com", "other": "READY"}, log.read_text()
    assert worker.returncode == 0, log.read_text()


def test_a_backend_naming_an_unknown_app_stops_django_with_a_clear_error(project):
    check = subprocess.run([sys.executable, "manage.py", "check"], cwd=PROJECT,
                           env={**os.environ, **ENV, "TEST_QTASKS_TASKS_APP": "nosuch"},
                           capture_output=True, text=True, timeout=60)
    assert check.returncode != 0
    assert ("ImproperlyConfigured: TASKS['default'] uses the qtasks app 'nosuch', which is not "
            "in settings.QTASKS") in check.stderr
