"""QTasks' component objects (worker, starter, plugins, Logger) drive the real worker."""

import logging
import threading

from apps import components_app
from helpers import clear_marks, marks, wait_until
from qtasks import QueueTasks
from qtasks.configs import QueueConfig
from qtasks.logs import Logger
from qtasks.starters import SyncStarter
from qtasks.workers import SyncThreadWorker


def _most_at_once(lines: list[str]) -> int:
    """The most naps that were running at the same moment, from their start/end marks."""
    events = []
    for line in lines:
        kind, _, stamp = line.split()
        if kind in ("start", "end"):
            events.append((float(stamp), 1 if kind == "start" else -1))
    running = most = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        running += step
        most = max(most, running)
    return most


def test_a_worker_object_sets_concurrency_executor_and_plugins(start_worker):
    app = components_app.app
    app.flush_all()
    clear_marks()
    start_worker("apps.components_app:app")
    handles = [app.add_task("nap", i) for i in range(6)]
    records = [wait_until(lambda h=h: (r := app.get(h.uuid)) and r.status == "success" and r,
                          timeout=30, what=f"nap {h.uuid}") for h in handles]
    # the worker object's own max_tasks_process (3), not the app config's default (10)
    assert _most_at_once(marks()) == 3
    # its task_executor ran every task; its test plugin marked the test=True task's record
    assert records[0].returning == {"by": "Tagged", "value": 0}
    assert records[0].is_testing == "True"
    # the retry plugin adds nothing to the built-in retries: two retries, three runs
    assert app.add_task("flaky", "k", timeout=20).status == "error"
    assert marks().count("flaky k") == 3


def test_a_starter_runs_and_stops_the_apps_worker():
    app = QueueTasks(name="tstarter", broker_url="memory://tstarter")

    @app.task
    def echo(x):
        return x

    worker = SyncThreadWorker(config=QueueConfig(max_tasks_process=5))
    starter = SyncStarter(worker=worker)
    runner = threading.Thread(target=app.run_forever, daemon=True,
                              kwargs={"starter": starter, "concurrency": 2})
    runner.start()
    assert app.add_task("echo", 7, timeout=10).returning == 7
    # the starter's worker object became the app's; run_forever's own concurrency won
    assert app.starter is starter and app.worker is worker
    assert app._worker.concurrency == 2
    starter.stop()
    runner.join(10)
    assert not runner.is_alive()


def test_broker_storage_is_the_apps_result_store(tmp_path):
    app = QueueTasks(name="tpaired", broker_url="memory://tpaired",
                     storage_url=f"sqlite:///{tmp_path}/records.db")
    assert app.broker.storage is app.storage is not app.broker
    assert app.broker.config is app.config


def test_a_qtasks_logger_is_the_apps_logger_and_the_tasks():
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    log = Logger("tlogger_app", subname="QueueTasks")
    logging.getLogger("tlogger_app").addHandler(Keep())
    app = QueueTasks(name="tlogger", broker_url="memory://tlogger", log=log)

    @app.task(echo=True)
    def speak(self, word):
        self.ctx.get_logger().info("said %s", word)
        return word

    runner = threading.Thread(target=app.run_forever, daemon=True)
    runner.start()
    assert app.add_task("speak", "hi", timeout=10).returning == "hi"
    app.stop()
    runner.join(10)
    said = [r for r in records if r.getMessage() == "said hi"]
    assert len(said) == 1 and said[0].subname == "speak"
