"""Named queues: a task goes to its definition's queue; a worker takes only the queues it is given."""

import subprocess
import sys
from pathlib import Path

import pytest

from apps import sync_app
from backend_urls import urls
from helpers import run_cli
from qtasks import QueueTasks

TESTS = Path(__file__).parent.parent


def test_a_worker_takes_only_its_queues(start_worker):
    app = sync_app.app
    app.flush_all()
    mail = app.add_task("mail", "ann")  # queue "emails", enqueued first
    start_worker("apps.sync_app:app", "--concurrency", "1")  # queues: default
    assert app.add_task("add", 1, 2, timeout=20).returning == 3
    assert app.get(mail.uuid).status == "new", "a default-queue worker ran an 'emails' task"
    assert app.stats().by_queue == {"emails": 1}
    info = run_cli("-A", "apps.sync_app:app", "info")
    assert "waiting in:   emails 1" in info.stdout, info.stdout + info.stderr
    start_worker("apps.sync_app:app", "--queues", "emails")
    assert app.wait_sync(mail.uuid, 20).returning == "mail to ann"


def test_one_worker_takes_several_queues_and_the_setting_works(start_worker):
    app = sync_app.app
    app.flush_all()
    mail, add = app.add_task("mail", "bob"), app.add_task("add", 2, 2)
    worker = start_worker("apps.sync_app:app", env={"QTASKS_WORKER_QUEUES": "emails,default"})
    assert app.wait_sync(mail.uuid, 20).returning == "mail to bob"
    assert app.wait_sync(add.uuid, 20).returning == 4
    assert "queues emails,default" in worker.output


def test_a_delayed_task_runs_on_a_worker_of_its_queue_only(start_worker):
    app = sync_app.app
    app.flush_all()
    worker = start_worker("apps.sync_app:app", "--queues", "emails")
    later = app.add_task("add", 5, 5, delay=0.3)  # default queue: not this worker's
    soon = app.add_task("mail", "cy", delay=0.3)
    assert app.wait_sync(soon.uuid, 20).returning == "mail to cy"
    assert app.get(later.uuid).status == "new"
    worker.stop()


def test_the_queue_option_is_checked():
    app = QueueTasks(name="queue-check", **urls("queue-check"))
    with pytest.raises(TypeError, match="queue must be a queue name"):
        app.task(queue=5)(lambda: None)
    assert app.task(queue="reports")(lambda: None).task_name == "<lambda>"


def test_an_empty_queue_list_is_refused():
    # the real command line, in a process of its own on any backend: it fails before any backend
    result = subprocess.run([sys.executable, "-m", "qtasks", "-A", "apps.sync_app:app", "run",
                             "--queues", " , "], capture_output=True, text=True, timeout=30,
                            cwd=TESTS)
    assert result.returncode == 2 and "give at least one queue name" in result.stderr
