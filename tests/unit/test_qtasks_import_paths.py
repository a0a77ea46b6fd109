"""Every import path of QTasks 1.7 (reference section 0), each imported and exercised once.

One row per path: the module, the name, and a check that uses the object the way QTasks code
does (without a worker; the worker-side behaviour of the components is tested in
tests/worker/test_qtasks_components.py and tests/test_qtasks_projects.py). Names qtasks
replaces on purpose must exist and raise ``NotYetSupported`` on first use, saying what to use
instead. docs/migration.md lists the same paths.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import json
import logging
import typing
import uuid

import pytest

import qtasks
from qtasks import QueueTasks
from qtasks.exceptions import NotYetSupported


def app(name: str = "paths") -> QueueTasks:
    return QueueTasks(name, broker_url="memory://")


def is_app_class(cls):
    assert issubclass(cls, qtasks.app.BaseQueueTasks)


def registers_tasks(make):
    """A router or app class: ``.task`` registers a function under its name."""
    owner = make()

    @owner.task
    def job():
        return 1

    assert "job" in owner.tasks


def shared_decorator(decorate):
    handle = decorate(f"shared_{uuid.uuid4().hex[:8]}")(lambda: 1)
    assert handle.task_name.startswith("shared_")


def replaced_by(instead: str):
    """Exists; its first use raises NotYetSupported naming ``instead``."""
    def check(obj):
        with pytest.raises(NotYetSupported) as info:
            obj()
        assert instead in str(info.value) and "docs/migration.md" in str(info.value)

    return check


def replaced_module(obj):
    with pytest.raises(NotYetSupported, match="gRPC API; enqueue from other services"):
        obj.SomeMessage  # noqa: B018
    assert not hasattr(obj, "__wrapped__")  # dunder lookups stay ordinary AttributeErrors


def version(value):
    assert isinstance(value, str) and value.count(".") >= 2


def handle_class(cls):
    flavour = "async" if cls.__name__.startswith("Async") else "sync"
    assert callable(cls.add_task)
    assert inspect.iscoroutinefunction(cls.add_task) == (flavour == "async")


def task_registry(cls):
    name = f"registered_{uuid.uuid4().hex[:8]}"
    handle = cls.register(name, priority=3)(lambda x: x)
    assert cls.get_task(name).priority == 3 and name in cls.all_tasks()
    assert handle.task_name == name


def result_waiter(cls):
    with pytest.raises(ValueError):
        cls(uuid=None, app=app())


def task_record(cls):
    fields = [f.name for f in dataclasses.fields(cls)][:4]
    assert fields == ["status", "uuid", "priority", "task_name"]


def status_enum(cls):
    assert cls.SUCCESS == "success" and cls.CANCEL == "cancel"


def config(cls):
    assert cls(max_tasks_process=3).max_tasks_process == 3


def redis_broker(factory):
    pytest.importorskip("redis")
    backend = factory(name="paths", url="redis://:secret@127.0.0.1:6379/15")
    assert "{paths}" in backend.describe() and "secret" not in backend.describe()


def later_broker(factory):
    with pytest.raises(NotYetSupported, match=r"not built yet|broker_url"):
        factory(url="amqp://guest:guest@localhost/")


def socket_broker(factory):
    with pytest.raises(NotYetSupported, match="socket"):
        factory()


def redis_storage(factory):
    pytest.importorskip("redis")
    from qtasks.brokers import AsyncRedisBroker

    storage = factory(name="paths", url="redis://127.0.0.1:6379/15")
    broker = AsyncRedisBroker(name="paths", url="redis://127.0.0.1:6379/14", storage=storage)
    assert broker.storage is storage and "{paths}" in storage.describe()
    assert not broker.storage.global_config  # QTasks code checks it first
    with pytest.raises(NotYetSupported, match="heartbeats"):
        broker.storage.global_config.get("main", "status")


def worker_object(cls):
    config = qtasks.QueueConfig(max_tasks_process=4)
    worker = cls(config=config)
    owner = QueueTasks("paths_worker", broker_url="memory://", worker=worker)
    assert owner.worker is worker and owner._concurrency == 4

    @owner.task
    def takes_timeout(timeout):
        return timeout

    added = worker.add("takes_timeout", priority=3, kwargs={"timeout": 5})  # a task argument
    added = asyncio.run(added) if inspect.isawaitable(added) else added
    assert added.kwargs == {"timeout": 5} and added.priority == 3 and added.status == "new"


def starter_object(cls):
    from qtasks.workers import SyncThreadWorker

    owner = app()
    worker = SyncThreadWorker(config=qtasks.QueueConfig(max_tasks_process=2))
    starter = cls(worker=worker)
    starter._app = owner
    starter.add_plugin(plugin := type("P", (), {"trigger": lambda self, name, **kw: None})(),
                       ["starter_start"])
    assert owner.worker is worker and owner._concurrency == 2
    assert plugin in owner._plugins.for_trigger("starter_start")
    starter.update_config(qtasks.QueueConfig(max_tasks_process=7, result_time_interval=0.5))
    assert owner.config.result_time_interval == 0.5


def executor_class(cls):
    from qtasks.core.codec import Envelope

    owner = app()

    @owner.task
    def double_for_paths(x):
        return x * 2

    message = Envelope(uuid=uuid.uuid4(), task_name="double_for_paths", priority=0, args=[4], kwargs={},
                       created_at=0.0)
    if cls.__name__ == "BaseTaskExecutor":
        executor = cls(owner.tasks["double_for_paths"], message)
        assert executor._args == [4] and executor.task_broker.name == "double_for_paths"
        assert executor._extract_args_kwargs_from_func(lambda a, b=2: 0) == ([None], {"b": 2})
        [meta] = executor._build_args_info([4], {})
        assert (meta.name, meta.value, meta.index, meta.is_kwarg) == ("x", 4, 0, False)
        assert json.loads(executor.decode_cls({"é": 1})) == {"é": 1}
        return
    executor = cls(owner.tasks["double_for_paths"], message)
    result = executor.execute()
    assert (asyncio.run(result) if inspect.isawaitable(result) else result) == 8


def task_middleware(cls):
    from qtasks.core.middleware import TaskRun

    class Add(cls):
        def __call__(self):
            self.task_executor._args = [*self.task_executor._args, 1]

    run = TaskRun(task_func=None, task_broker=None, args=[], kwargs={})
    Add(run)()
    assert run.args == [1]


def base_middleware(cls):
    assert cls("named").name == "named"


def timer(cls):
    pytest.importorskip("apscheduler")
    assert callable(cls(app()).add_task)


def stats(cls):
    owner = app()

    @owner.task(description="d")
    def listed():
        pass

    inspected = cls(owner).inspect()
    inspected = asyncio.run(inspected) if inspect.isawaitable(inspected) else inspected
    assert "listed" in inspected.tasks()


def inspect_stats(cls):
    owner = app()
    assert "paths" in cls(owner).app()


def utils_inspect_stats(cls):
    class Mine(cls):
        pass

    owner = app()

    @owner.task
    def shown(a: int, b=2):
        pass

    assert json.loads(Mine()._parser_json([owner.tasks["shown"]]))[0]["name"] == "shown"
    assert Mine()._task_get_args_kwargs(shown.func) == (["a: int"], {"b": 2})


def plugin_base(cls):
    class Mine(cls):
        def trigger(self, name, **kwargs):
            return {"seen": name}

    assert Mine().trigger("x") == {"seen": "x"}


def built_in_plugin(cls):
    import qtasks.compat.plugins as built_in

    built_in._told.discard(cls)
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    keep = Keep()
    logging.getLogger("qtasks.plugins").addHandler(keep)
    logging.getLogger("qtasks.plugins").setLevel(logging.INFO)
    try:
        owner = app()
        owner.add_plugin(cls(), ["worker_task_error_retry"], component="worker")
        cls()
    finally:
        logging.getLogger("qtasks.plugins").removeHandler(keep)
    # it says, once, that the worker does this itself
    assert [m for m in seen if cls.__name__ in m and "built into" in m] == seen[:1]
    assert cls().trigger("worker_task_error_retry") is None


def marks_test_records(cls):
    from qtasks.backends.base import Delivery, Outcome

    plugin = cls()
    owner = app()

    @owner.task(test="yes")
    def marked():
        pass

    delivery = Delivery(tag="1", uuid=None, payload="{}", deliveries=0, priority=0)
    outcome = Outcome(delivery=delivery, uuid=str(uuid.uuid4()),
                      status="success", task_name="marked", priority=0)
    result = plugin.trigger("worker_remove_finished_task", task_func=owner.tasks["marked"],
                            model=outcome)
    assert json.loads(result["model"].extra_json) == {"is_testing": "yes"}


def depends(cls):
    assert cls(lambda: 1) is not None


def scope_enum(cls):
    assert cls.TASK == "task" and cls.WORKER == "worker"


def state_class(cls):
    class Counter(cls):
        pass

    assert issubclass(Counter, cls)


def task_cancel_error(cls):
    assert issubclass(cls, RuntimeError)


def plugin_trigger_error(cls):
    assert cls("x", a=1).kwargs == {"a": 1}


def a_test_case(cls):
    owner = app()
    case = cls(owner)
    assert case.app is owner


def a_test_config(cls):
    assert cls.full().worker and not cls().worker


def exec_schema(cls):
    assert {"name", "priority", "func", "executor"} <= {f.name for f in dataclasses.fields(cls)}


def status_schema(cls):
    model = cls(task_name="t", args=(1,), kwargs={"a": 2})
    assert model.args == "[1]" and json.loads(model.kwargs) == {"a": 2}
    assert model.status in ("new", "process", "success", "error", "cancel")


def global_config_schema(cls):
    assert cls(name="main", status="running").status == "running"


def priority_schema(cls):
    message = cls(priority=1, uuid=uuid.uuid4(), name="t", args=[1], kwargs={}, created_at=1.0)
    assert message.name == message.task_name == "t" and message.args == [1]


def arg_meta(cls):
    assert cls(name="a", value=1, origin=None, raw_type=int, annotation=int,
               is_kwarg=False, index=0).index == 0


def inits_schema(cls):
    assert cls(name="startup", func=print).awaiting is False


def task_cls(cls):
    owner = app() if cls.__name__ != "AsyncTaskCls" else qtasks.asyncio.QueueTasks(
        "paths_async", broker_url="memory://")

    @owner.task
    def made(x):
        return x

    call = made(1, timeout=5)  # calling a handle makes one of these, sent later
    assert isinstance(call, cls) and call.args == (1,) and call.timeout == 5


def context_class(cls):
    assert callable(cls.get_logger)


def events_class(cls):
    events = cls()

    @events.on.task_success()
    def noted(**kwargs):
        pass

    assert events.has("task_success")


def logger(cls):
    log = cls("paths_logger", subname="Worker")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logging.getLogger("paths_logger").addHandler(Keep())
    log.with_subname("Task").info("hello %s", "there")
    assert records[-1].getMessage() == "hello there" and records[-1].subname == "Task"


def autodiscover(func):
    assert list(inspect.signature(func).parameters) == ["app", "modules"]


def command_queue(cls):
    assert callable(cls(object()).execute)


def get_app(func):
    owner = app()
    assert func() is owner


def task_utils(cls):
    owner = app()

    @owner.task
    def step(x):
        return x

    assert callable(cls.chain(step(1), step(2)).get)


def app_main(value):
    owner = app()
    assert importlib.import_module("qtasks._state").app_main is owner


def log_main(value):
    owner = app()
    assert importlib.import_module("qtasks._state").log_main is owner.log


def plugin_mixin(cls):
    class Component(cls):
        def __init__(self):
            self.plugins = {}

    class Replace:
        def trigger(self, name, **kwargs):
            return {"value": kwargs["value"] + 1}

    class Broken:
        async def trigger(self, name, **kwargs):
            raise RuntimeError("a broken plugin is logged and skipped")

    component = Component()
    component.add_plugin(Replace(), ["t"])
    component.add_plugin(Broken())  # every trigger ("Globals")
    merged = component._plugin_trigger("t", value=1, return_last=True)
    merged = asyncio.run(merged) if inspect.isawaitable(merged) else merged
    assert merged == {"value": 2}
    results = component._plugin_trigger("t", value=5)
    results = asyncio.run(results) if inspect.isawaitable(results) else results
    assert results == [{"value": 6}]


def type_var(value):
    assert isinstance(value, typing.TypeVar | typing.ParamSpec)


def cli_main(func):
    assert callable(func)


PATHS = [
    ("qtasks", "QueueTasks", is_app_class),
    ("qtasks.asyncio", "QueueTasks", is_app_class),
    ("qtasks.asyncio.qtasks", "QueueTasks", is_app_class),
    ("qtasks", "AsyncRouter", registers_tasks),
    ("qtasks", "SyncRouter", registers_tasks),
    ("qtasks.routers", "AsyncRouter", registers_tasks),
    ("qtasks.routers", "SyncRouter", registers_tasks),
    ("qtasks", "shared_task", shared_decorator),
    ("qtasks.utils", "shared_task", shared_decorator),
    ("qtasks.utils.registry", "shared_task", shared_decorator),
    ("qtasks", "Depends", depends),
    ("qtasks.plugins", "Depends", depends),
    ("qtasks.plugins.depends", "Depends", depends),
    ("qtasks", "__version__", version),
    ("qtasks.registries", "AsyncTask", handle_class),
    ("qtasks.registries", "SyncTask", handle_class),
    ("qtasks.registries", "TaskRegistry", task_registry),
    ("qtasks.registries.async_task_decorator", "AsyncTask", handle_class),
    ("qtasks.registries.sync_task_decorator", "SyncTask", handle_class),
    ("qtasks.results", "AsyncResult", result_waiter),
    ("qtasks.results", "SyncResult", result_waiter),
    ("qtasks.schemas.task", "Task", task_record),
    ("qtasks.enums.task_status", "TaskStatusEnum", status_enum),
    ("qtasks.enums", "TaskStatusEnum", status_enum),
    ("qtasks.configs", "QueueConfig", config),
    ("qtasks.configs.config", "QueueConfig", config),
    ("qtasks.configs", "AsyncRedisGlobalConfig", replaced_by("app.ping()")),
    ("qtasks.configs", "SyncRedisGlobalConfig", replaced_by("app.ping()")),
    ("qtasks.brokers", "SyncRedisBroker", redis_broker),
    ("qtasks.brokers", "AsyncRedisBroker", redis_broker),
    ("qtasks.brokers", "SyncRabbitMQBroker", later_broker),
    ("qtasks.brokers", "AsyncRabbitMQBroker", later_broker),
    ("qtasks.brokers", "SyncKafkaBroker", later_broker),
    ("qtasks.brokers", "AsyncKafkaBroker", later_broker),
    ("qtasks.brokers", "SyncSocketBroker", socket_broker),
    ("qtasks.brokers", "AsyncSocketBroker", socket_broker),
    ("qtasks.storages", "AsyncRedisStorage", redis_storage),
    ("qtasks.storages", "SyncRedisStorage", redis_storage),
    ("qtasks.workers", "AsyncWorker", worker_object),
    ("qtasks.workers", "SyncThreadWorker", worker_object),
    ("qtasks.starters", "AsyncStarter", starter_object),
    ("qtasks.starters", "SyncStarter", starter_object),
    ("qtasks.executors", "AsyncTaskExecutor", executor_class),
    ("qtasks.executors", "SyncTaskExecutor", executor_class),
    ("qtasks.executors.base", "BaseTaskExecutor", executor_class),
    ("qtasks.middlewares", "TaskMiddleware", task_middleware),
    ("qtasks.middlewares.base", "BaseMiddleware", base_middleware),
    ("qtasks.timers", "AsyncTimer", timer),
    ("qtasks.timers", "SyncTimer", timer),
    ("qtasks.stats", "AsyncStats", stats),
    ("qtasks.stats", "SyncStats", stats),
    ("qtasks.stats.async_stats", "AsyncStats", stats),
    ("qtasks.stats.sync_stats", "SyncStats", stats),
    ("qtasks.stats.inspect", "InspectStats", inspect_stats),
    ("qtasks.stats.inspect", "UtilsInspectStats", utils_inspect_stats),
    ("qtasks.plugins.base", "BasePlugin", plugin_base),
    ("qtasks.plugins", "AsyncRetryPlugin", built_in_plugin),
    ("qtasks.plugins", "SyncRetryPlugin", built_in_plugin),
    ("qtasks.plugins", "AsyncPydanticWrapperPlugin", built_in_plugin),
    ("qtasks.plugins", "SyncPydanticWrapperPlugin", built_in_plugin),
    ("qtasks.plugins", "AsyncDependsPlugin", built_in_plugin),
    ("qtasks.plugins", "SyncDependsPlugin", built_in_plugin),
    ("qtasks.plugins", "AsyncStatePlugin", built_in_plugin),
    ("qtasks.plugins", "SyncStatePlugin", built_in_plugin),
    ("qtasks.plugins", "AsyncState", state_class),
    ("qtasks.plugins", "SyncState", state_class),
    ("qtasks.plugins", "AsyncTestPlugin", marks_test_records),
    ("qtasks.plugins", "SyncTestPlugin", marks_test_records),
    ("qtasks.plugins", "AsyncgRPCPlugin", replaced_by("a qtasks app with the same broker_url")),
    ("qtasks.plugins", "SyncgRPCPlugin", replaced_by("a qtasks app with the same broker_url")),
    ("qtasks.plugins.depends", "ScopeEnum", scope_enum),
    ("qtasks.plugins.states", "AsyncState", state_class),
    ("qtasks.plugins.states", "SyncState", state_class),
    ("qtasks.plugins.testing.sync_test", "SyncTestPlugin", marks_test_records),
    ("qtasks.plugins.grpc.core", "qtasks_pb2", replaced_module),
    ("qtasks.plugins.grpc.core", "qtasks_pb2_grpc", replaced_module),
    ("qtasks.exc", "TaskCancelError", task_cancel_error),
    ("qtasks.exc", "TaskPluginTriggerError", plugin_trigger_error),
    ("qtasks.tests", "SyncTestCase", a_test_case),
    ("qtasks.tests", "AsyncTestCase", a_test_case),
    ("qtasks.schemas.test", "TestConfig", a_test_config),
    ("qtasks.schemas", "TestConfig", a_test_config),
    ("qtasks.schemas", "TaskExecSchema", exec_schema),
    ("qtasks.schemas", "GlobalConfigSchema", global_config_schema),
    ("qtasks.schemas", "TaskStatusNewSchema", status_schema),
    ("qtasks.schemas", "TaskStatusProcessSchema", status_schema),
    ("qtasks.schemas", "TaskStatusSuccessSchema", status_schema),
    ("qtasks.schemas", "TaskStatusErrorSchema", status_schema),
    ("qtasks.schemas.task_status", "TaskStatusCancelSchema", status_schema),
    ("qtasks.schemas.task_exec", "TaskPrioritySchema", priority_schema),
    ("qtasks.schemas.argmeta", "ArgMeta", arg_meta),
    ("qtasks.schemas.inits", "InitsExecSchema", inits_schema),
    ("qtasks.schemas.task_cls", "BaseTaskCls", task_cls),
    ("qtasks.schemas.task_cls", "AsyncTaskCls", task_cls),
    ("qtasks.schemas.task_cls", "SyncTaskCls", task_cls),
    ("qtasks.contexts", "AsyncContext", context_class),
    ("qtasks.contexts", "SyncContext", context_class),
    ("qtasks.events", "AsyncEvents", events_class),
    ("qtasks.events", "SyncEvents", events_class),
    ("qtasks.logs", "Logger", logger),
    ("qtasks.contrib.django", "autodiscover_tasks", autodiscover),
    ("qtasks.contrib.redis", "AsyncRedisCommandQueue", command_queue),
    ("qtasks.contrib.redis", "SyncRedisCommandQueue", command_queue),
    ("qtasks.utils", "get_app", get_app),
    ("qtasks.utils", "AsyncTaskUtils", task_utils),
    ("qtasks.utils.tasks.async_task_utils", "AsyncTaskUtils", task_utils),
    ("qtasks.utils.tasks.sync_task_utils", "SyncTaskUtils", task_utils),
    ("qtasks._state", "app_main", app_main),
    ("qtasks._state", "log_main", log_main),
    ("qtasks.mixins", "AsyncPluginMixin", plugin_mixin),
    ("qtasks.mixins", "SyncPluginMixin", plugin_mixin),
    ("qtasks.base", "BaseQueueTasks", is_app_class),
    ("qtasks.types", "P", type_var),
    ("qtasks.types", "R", type_var),
    ("qtasks.types", "T", type_var),
    ("qtasks.types", "TAsyncFlag", type_var),
    ("qtasks.__main__", "main", cli_main),
]


@pytest.mark.parametrize(("module", "name", "exercise"), PATHS,
                         ids=[f"{m}.{n}" for m, n, _ in PATHS])
def test_qtasks_import_path(module, name, exercise):
    exercise(getattr(importlib.import_module(module), name))


def test_every_path_is_listed_in_the_migration_guide():
    from pathlib import Path

    guide = (Path(__file__).parents[2] / "docs" / "migration.md").read_text()
    missing = [f"{m}.{n}" for m, n, _ in PATHS if f"`{m}.{n}`" not in guide
               and f"`from {m} import {n}`" not in guide]
    assert not missing, f"docs/migration.md does not list: {missing}"


def test_unknown_plugin_names_fail_where_they_are_made():
    with pytest.raises(ImportError):
        from qtasks.plugins import NoSuchPlugin  # noqa: F401  (QTasks returned None here)
