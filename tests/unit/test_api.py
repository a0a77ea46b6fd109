"""The public API without a worker: registration, config, codec, compat import paths."""

import asyncio

import pytest

import qtasks
from qtasks import QueueConfig, QueueTasks, SyncRouter, shared_task
from qtasks.asyncio import QueueTasks as AsyncQueueTasks
from qtasks.handles import AsyncTask, SyncTask


def memory_app(cls=QueueTasks, name="unit"):
    app = cls(name=name, broker_url=f"memory://{name}")
    return app


def test_decorator_forms_register():
    app = memory_app()

    @app.task
    def bare():
        return 1

    @app.task()
    def called():
        return 2

    @app.task("named")
    def positional():
        return 3

    @app.task(name="kw", priority=4)
    def keyword():
        return 4

    assert {"bare", "called", "named", "kw"} <= set(app.tasks)
    assert isinstance(bare, SyncTask) and bare.task_name == "bare"
    assert keyword.priority == 4 and app.tasks["kw"].priority == 4
    assert bare.func() == 1


def test_async_app_returns_async_handles():
    app = memory_app(AsyncQueueTasks, "unit-async")

    @app.task
    def plain():
        return 1

    assert isinstance(plain, AsyncTask)


def test_duplicate_task_name_raises_value_error():
    app = memory_app()

    @app.task(name="dup")
    def one():
        return 1

    with pytest.raises(ValueError, match="dup"):

        @app.task(name="dup")
        def two():
            return 2


def test_router_name_clash_with_app_task_raises():
    app = memory_app()
    router = SyncRouter()
    app.include_router(router)

    @app.task(name="clash")
    def mine():
        return 1

    with pytest.raises(ValueError, match="clash"):

        @router.task(name="clash")
        def theirs():
            return 2


def test_bare_router_decorator_returns_a_handle():
    router = SyncRouter()

    @router.task
    def routed():
        return 1

    assert isinstance(routed, SyncTask) and "routed" in router.tasks


@pytest.mark.parametrize(("option", "error"), [
    ({"max_time": 0}, ValueError), ({"max_time": "1"}, ValueError), ({"retry": -1}, ValueError),
    ({"retry": 1.5}, ValueError), ({"retry_on_exc": [42]}, TypeError),
    ({"retry_delay": -1}, ValueError), ({"decode": "json"}, TypeError),
    ({"generate_handler": str}, ValueError), ({"middlewares_before": [object]}, TypeError),
    ({"middlewares_after": [len]}, TypeError), ({"executor": object}, TypeError),
])
def test_bad_run_options_are_refused_at_registration(option, error):
    app = memory_app()
    with pytest.raises(error):

        @app.task(**option)
        def task():
            return 1


def test_generator_functions_are_detected():
    app = memory_app()

    @app.task(generate_handler=str)
    def gen():
        yield 1

    @app.task
    async def agen():
        yield 1

    assert app.tasks["gen"].generating == "sync" and app.tasks["agen"].generating == "async"


def test_tags_description_and_extra_are_kept():
    app = memory_app()

    @app.task(tags=["a"], description="d", test=True)
    def meta():
        return 1

    definition = app.tasks["meta"]
    assert (definition.tags, definition.description, definition.extra) == (["a"], "d", {"test": True})


def test_config_from_environment(monkeypatch):
    monkeypatch.setenv("QTASKS_TASK_DEFAULT_PRIORITY", "21")
    monkeypatch.setenv("QTASKS_RESULT_STATUSES_END", "success,error")
    monkeypatch.setenv("QTASKS_RUNNING_OLDER_TASKS", "yes")
    monkeypatch.setenv("QTASKS_WORKER_PREFETCH", "none")
    monkeypatch.setenv("qtasks_max_tasks_process", "3")
    config = QueueConfig()
    assert config.task_default_priority == 21
    assert config.result_statuses_end == ["success", "error"]
    assert config.running_older_tasks is True
    assert config.worker_prefetch is None
    assert config.max_tasks_process == 3
    app = QueueTasks(name="envapp", broker_url="memory://envapp")

    @app.task
    def prio():
        return 1

    assert app.config.task_default_priority == 21 and prio.priority == 21


def test_config_list_as_json_and_bad_value_errors(monkeypatch):
    monkeypatch.setenv("QTASKS_RESULT_STATUSES_END", '["success"]')
    assert QueueConfig().result_statuses_end == ["success"]
    monkeypatch.setenv("QTASKS_MAX_TASKS_PROCESS", "many")
    with pytest.raises(ValueError, match="QTASKS_MAX_TASKS_PROCESS"):
        QueueConfig()


def test_config_subscribe_and_dynamic_fields():
    config = QueueConfig()
    seen = []
    config.subscribe(lambda cfg, key, value: seen.append((key, value)))
    config.max_tasks_process = 4
    config.my_flag = 1
    assert seen == [("max_tasks_process", 4), ("my_flag", 1)]
    assert config.my_flag == 1


def test_broker_url_from_environment(monkeypatch):
    monkeypatch.setenv("QTASKS_BROKER_URL", "memory://from-env")
    app = QueueTasks(name="x")
    assert app.backend.url == "memory://from-env"


def test_unknown_backend_scheme_is_a_clear_error():
    from qtasks.exceptions import BackendError

    app = QueueTasks(name="x", broker_url="kafka://user:secret@host/")
    with pytest.raises(BackendError) as info:
        app.add_task("t")
    assert "secret" not in str(info.value)


def test_compat_import_paths():
    from qtasks.configs import QueueConfig as C1
    from qtasks.configs.config import QueueConfig as C2
    from qtasks.enums.task_status import TaskStatusEnum
    from qtasks.exc import TaskCancelError, TaskPluginTriggerError
    from qtasks.registries import AsyncTask as A1
    from qtasks.registries import SyncTask as S1
    from qtasks.results import AsyncResult, SyncResult
    from qtasks.schemas.task import Task
    from qtasks.utils import shared_task as st

    assert C1 is C2 is QueueConfig and S1 is SyncTask and A1 is AsyncTask
    assert Task is qtasks.Task and st is shared_task
    assert TaskStatusEnum.SUCCESS == "success" and issubclass(TaskCancelError, RuntimeError)
    assert TaskPluginTriggerError("x", a=1).kwargs == {"a": 1}
    assert SyncResult and AsyncResult
    from qtasks.stats import InspectStats
    from qtasks.stats.inspect import InspectStats as IS2

    assert InspectStats is IS2
    from qtasks.plugins import BasePlugin as P1
    from qtasks.plugins.base import BasePlugin as P2

    assert P1 is P2
    with pytest.raises(ImportError):
        from qtasks.plugins import NoSuchPlugin  # noqa: F401  (QTasks returned None here)


def test_public_surface():
    assert sorted(qtasks.__all__) == qtasks.__all__
    for name in qtasks.__all__:
        assert getattr(qtasks, name) is not None


def test_memory_backend_round_trip_with_in_process_worker():
    from qtasks.worker import Worker

    app = AsyncQueueTasks(name="inproc", broker_url="memory://inproc")

    @app.task
    async def twice(x):
        return x * 2

    @app.task
    def thrice(x):
        return x * 3

    async def scenario():
        worker = Worker(app, install_signals=False)
        running = asyncio.create_task(worker.run())
        try:
            a = await twice.add_task(4, timeout=5)
            b = await app.add_task("thrice", 2, timeout=5)
        finally:
            worker.stop()
            await running
        return a, b

    a, b = asyncio.run(scenario())
    assert (a.status, a.returning, b.returning) == ("success", 8, 6)


def test_shared_task_handle_flavours():
    @shared_task(awaiting=True)
    async def shared_async(x):
        return x

    @shared_task(name="shared_sync_named")
    def shared_sync(x):
        return x

    assert isinstance(shared_async, AsyncTask) and isinstance(shared_sync, SyncTask)
    app = memory_app(name="sees-shared")
    assert "shared_sync_named" in app.tasks


def test_two_apps_sharing_one_database_do_not_take_each_others_tasks(tmp_path):
    from qtasks.worker import Worker

    url = f"sqlite:///{tmp_path}/shared.sqlite3"
    first = AsyncQueueTasks(name="first", broker_url=url)
    second = AsyncQueueTasks(name="second", broker_url=url)

    @first.task(name="job")
    async def job_first():
        return "first"

    async def scenario():
        await first.flush_all()
        await second.flush_all()
        foreign = await second.add_task("job")
        worker = Worker(first, install_signals=False)
        running = asyncio.create_task(worker.run())
        try:
            mine = await first.add_task("job", timeout=5)
            await asyncio.sleep(0.2)
        finally:
            worker.stop()
            await running
        return mine, await second.get(foreign.uuid), await first.get(foreign.uuid)

    mine, foreign, cross = asyncio.run(scenario())
    assert mine.returning == "first"
    assert foreign.status == "new"  # still waiting for a worker of its own app
    assert cross is None  # records are per app too


def test_stop_ends_run_forever_from_another_thread():
    import threading

    app = QueueTasks(name="stoppable", broker_url="memory://stoppable")

    @app.task
    def one():
        return 1

    thread = threading.Thread(target=app.run_forever, daemon=True)
    thread.start()
    assert app.add_task("one", timeout=5).returning == 1
    app.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_shared_task_clashing_with_an_app_task_raises():
    app = memory_app(name="clash-shared")

    @app.task(name="taken_by_app")
    def mine():
        return 1

    with pytest.raises(ValueError, match="taken_by_app"):

        @shared_task(name="taken_by_app")
        def theirs():
            return 2


def test_plugins_and_middlewares_are_checked():
    from qtasks.plugins.base import BasePlugin

    app = memory_app()
    with pytest.raises(TypeError, match="not a plugin"):
        app.add_plugin(object())
    with pytest.raises(KeyError, match="Unable to get component nope"):
        app.add_plugin(BasePlugin(), component="nope")
    with pytest.raises(TypeError, match="TaskMiddleware"):
        app.add_middleware(object)


def test_result_statuses_end_decides_when_waiting_stops():
    app = QueueTasks(name="ends", broker_url="memory://ends",
                     config=QueueConfig(result_statuses_end=["process"]))
    import threading

    @app.task
    def slow():
        import time

        time.sleep(1)
        return 1

    thread = threading.Thread(target=app.run_forever, daemon=True)
    thread.start()
    try:
        assert app.add_task("slow", timeout=5).status == "process"
    finally:
        app.stop()
        thread.join(10)


def test_database_of_another_schema_version_is_a_clear_error(tmp_path):
    import sqlite3

    from qtasks.exceptions import BackendError

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.commit()
    conn.close()
    app = QueueTasks(name="old", broker_url=f"sqlite:///{path}")
    with pytest.raises(BackendError, match="schema 1"):
        app.get(str(__import__("uuid").uuid4()))


def test_broker_must_be_a_qtasks_backend(tmp_path):
    from qtasks.backends.sqlite import SqliteBackend

    with pytest.raises(TypeError, match="broker_url"):
        QueueTasks(broker=object())
    backend = SqliteBackend(f"sqlite:///{tmp_path}/b.sqlite3", name="given")
    app = QueueTasks(name="given", broker=backend)
    assert app.backend is backend and app.add_task("x").status == "new"
