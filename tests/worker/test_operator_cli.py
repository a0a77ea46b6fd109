"""``qtasks tasks list|show|cancel`` and ``qtasks queues`` on the test backend."""

import json

import pytest

from apps import sync_app
from helpers import run_cli as qtasks
from helpers import wait_until

APP = "apps.sync_app:app"


def test_list_show_and_cancel_waiting_tasks():
    app = sync_app.app
    app.flush_all()
    first, second = app.add_task("add", 1, 2), app.add_task("test", 7, priority=3)
    listed = qtasks("-A", APP, "tasks", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["UUID", "TASK_NAME", "STATUS", "QUEUE", "PRIORITY", "CREATED_AT",
                              "UPDATED_AT"]
    assert [r.split()[:5] for r in rows] == [[str(second.uuid), "test", "new", "default", "3"],
                                            [str(first.uuid), "add", "new", "default", "0"]]

    shown = qtasks("-A", APP, "tasks", "show", str(first.uuid), "--json")
    detail = json.loads(shown.stdout)
    assert (detail["task_name"], detail["status"], detail["args"]) == ("add", "new", [1, 2])

    cancelled = qtasks("-A", APP, "tasks", "cancel", str(second.uuid))
    assert (cancelled.returncode, cancelled.stdout.strip()) == (0, f"{second.uuid}: cancelled")
    again = qtasks("-A", APP, "tasks", "cancel", str(second.uuid), "--json")
    assert again.returncode == 1
    assert json.loads(again.stdout)["reason"] == "already final (cancel)"
    assert app.get(second.uuid).status == "cancel"

    only = json.loads(qtasks("-A", APP, "tasks", "list", "--status", "cancel", "--json").stdout)
    assert [r["uuid"] for r in only] == [str(second.uuid)]
    by_name = json.loads(qtasks("-A", APP, "tasks", "list", "--task", "add", "--json").stdout)
    assert [r["uuid"] for r in by_name] == [str(first.uuid)]
    assert json.loads(qtasks("-A", APP, "tasks", "list", "--queue", "emails", "--json").stdout) \
        == []
    page = json.loads(qtasks("-A", APP, "tasks", "list", "--limit", "1", "--json").stdout)
    after = json.loads(qtasks("-A", APP, "tasks", "list", "--after", page[0]["uuid"],
                              "--json").stdout)
    assert [r["uuid"] for r in page + after] == [str(second.uuid), str(first.uuid)]
    older = qtasks("-A", APP, "tasks", "list", "--before", "2000-01-01T00:00:00")
    assert older.stdout.strip() == "no tasks"

    queues = json.loads(qtasks("-A", APP, "queues", "--json").stdout)
    assert {"queue": "default", "waiting": 1} in queues["queues"]
    assert (queues["totals"]["queued"], queues["totals"]["records"]) == (1, 2)
    table = qtasks("-A", APP, "queues").stdout
    assert "1 waiting (0 of them delayed)" in table


def test_a_failed_task_shows_its_traceback(start_worker):
    app = sync_app.app
    app.flush_all()
    start_worker(APP)
    failed = app.add_task("error_task", timeout=20)
    assert failed.status == "error"
    shown = qtasks("-A", APP, "tasks", "show", str(failed.uuid))
    assert shown.returncode == 0, shown.stderr
    assert "status:             error" in shown.stdout
    assert "ZeroDivisionError" in shown.stdout.split("traceback:", 1)[1]


def test_mistakes_are_usage_errors():
    for args, message in ((["tasks", "show", "not-a-uuid"], "not a task id: 'not-a-uuid'"),
                          (["tasks", "list", "--status", "done"],
                           "unknown status 'done': one of new, process, success, error, cancel"),
                          (["tasks", "list", "--before", "yesterday"],
                           "not a time: 'yesterday' (give epoch seconds or an ISO time such as "
                           "2026-12-06T10:00:00)"),
                          (["tasks", "show", "9b2d1c3e-0000-4000-8000-000000000000"],
                           "no task 9b2d1c3e-0000-4000-8000-000000000000"),
                          (["tasks", "list", "--after", "9b2d1c3e-0000-4000-8000-000000000000"],
                           "no task 9b2d1c3e-0000-4000-8000-000000000000 to page after (its "
                           "record may have expired)")):
        result = qtasks("-A", APP, *args)
        assert (result.returncode, result.stderr.strip()) == (2, f"qtasks: error: {message}")


def test_retry_runs_a_failed_task_again_as_a_new_task(start_worker):
    app = sync_app.app
    app.flush_all()
    start_worker(APP)
    failed = app.add_task("error_task", timeout=20)
    done = app.add_task("add", 1, 1, timeout=20)
    retried = qtasks("-A", APP, "tasks", "retry", str(failed.uuid), "--json")
    assert retried.returncode == 0, retried.stderr
    new = json.loads(retried.stdout)["new"]
    again = app.wait_sync(new, 20)
    assert (again.task_name, again.status, again.retry_parent_uuid) == \
        ("error_task", "error", failed.uuid)
    assert app.get(failed.uuid).status == "error"  # the old record keeps its one final status
    refused = qtasks("-A", APP, "tasks", "retry", str(done.uuid))
    assert refused.returncode == 2
    assert "is 'success': only a failed or cancelled task can be retried" in refused.stderr


def test_dead_letters_are_requeued_and_deleted(start_worker):
    app = sync_app.app
    app.flush_all()
    start_worker(APP)
    first = app.add_task("unencodable", timeout=20)  # its result cannot be stored: dead letter
    second = app.add_task("unencodable", timeout=20)
    assert {d.uuid for d in app.dead_letters()} == {str(first.uuid), str(second.uuid)}
    requeued = qtasks("-A", APP, "dead-letters", "requeue", str(first.uuid), "--json")
    assert requeued.returncode == 0, requeued.stderr
    (pair,) = json.loads(requeued.stdout)["requeued"]
    assert pair["dead"] == str(first.uuid)
    rerun = app.wait_sync(pair["new"], 20)
    assert (rerun.task_name, rerun.retry_parent_uuid) == ("unencodable", first.uuid)
    # it failed the same way, so it is a dead letter again, under its new uuid
    assert {d.uuid for d in app.dead_letters()} == {str(second.uuid), pair["new"]}
    missing = qtasks("-A", APP, "dead-letters", "requeue", str(first.uuid))
    assert missing.returncode == 1
    assert f"{first.uuid}: not requeued: no dead letter of this task" in missing.stdout
    deleted = qtasks("-A", APP, "dead-letters", "delete", "--all")
    assert (deleted.returncode, deleted.stdout.strip()) == (0, "deleted 2 dead letters")
    assert app.dead_letters() == []
    usage = qtasks("-A", APP, "dead-letters", "requeue")
    assert usage.returncode == 2 and "give --all or the UUIDs" in usage.stderr


def test_purge_drops_waiting_tasks_and_cancels_their_records():
    app = sync_app.app
    app.flush_all()
    tasks = app.add_tasks([sync_app.add(i, 1) for i in range(1200)])
    other = app.add_task("mail", "ada@example.com")  # the emails queue: left alone
    asked = qtasks("-A", APP, "purge", "default")  # no terminal to answer the question
    assert asked.returncode == 2 and "add --yes" in asked.stderr
    assert app.stats().by_queue.get("default") == 1200
    purged = qtasks("-A", APP, "purge", "default", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.strip() == "purged 1200 tasks from queue 'default'"
    lines = purged.stderr.splitlines()  # progress, as plain lines (not a terminal)
    assert lines[-1] == "purged: 1,200/1,200"
    assert all(line.startswith("purged: ") and line.endswith("/1,200") for line in lines)
    assert {app.get(t.uuid).status for t in tasks[::97]} == {"cancel"}
    assert app.get(other.uuid).status == "new"
    assert "default" not in app.stats().by_queue


@pytest.mark.requires_processes("reads the worker process's own log output")
def test_json_logs_have_one_line_per_task_outcome(start_worker):
    app = sync_app.app
    app.flush_all()
    worker = start_worker(APP, "--log-format", "json")
    done = app.add_task("add", 2, 3, timeout=20)
    failed = app.add_task("flaky", "j1", timeout=20)  # two retries, then an error
    assert (done.status, failed.status) == ("success", "error")
    wait_until(lambda: worker.output.count('"logger": "qtasks.task"') >= 4,
               what="four task lines")
    lines = [json.loads(line) for line in worker.output.splitlines() if line.startswith("{")]
    assert len(lines) == len(worker.output.strip().splitlines())  # every line is JSON
    tasks = [line for line in lines if line["logger"] == "qtasks.task"]
    by_uuid = {line["uuid"]: line for line in tasks}
    ok = by_uuid[str(done.uuid)]
    assert (ok["task_name"], ok["queue"], ok["result"], ok["level"]) == \
        ("add", "default", "success", "INFO")
    assert ok["seconds"] >= 0 and ok["waited"] >= 0
    flaky = [line for line in tasks if line["task_name"] == "flaky"]
    assert [line["result"] for line in flaky] == ["retry", "retry", "error"]
    assert flaky[-1]["uuid"] == str(failed.uuid) and flaky[-1]["level"] == "WARNING"
