"""Plugins shared by the sync and async plugin test apps."""

from qtasks.plugins.base import BasePlugin


class Priority(BasePlugin):
    """Returns one key only: the other arguments must survive."""

    def trigger(self, name, **kwargs):
        if kwargs.get("task_name") == "prio":
            return {"priority": 7}
        return None


class DoubleFirst(BasePlugin):
    def __init__(self):
        super().__init__()
        self.handlers = {"task_executor_args_replace": self.args_replace}

    def args_replace(self, task_executor, args, kw, args_info):
        if task_executor.task_func.name == "doubled":
            return {"args": [args[0] * 2, *args[1:]]}
        return None


class Exclaim(BasePlugin):
    async def trigger(self, name, **kwargs):
        run = kwargs.get("task_executor")
        if name == "task_executor_after_execute_result_replace" and \
                run.task_func.name == "resulted":
            return {"result": kwargs["result"] + "!"}
        return None


class Decide(BasePlugin):
    def trigger(self, name, **kwargs):
        return {"result": f"decided by plugin: {kwargs['e'].kwargs['why']}"}


class Broken(BasePlugin):
    def trigger(self, name, **kwargs):
        raise RuntimeError("this plugin is broken")


def install(app):
    app.add_plugin(Priority(), ["qtasks_add_task_before_broker"])
    app.add_plugin(DoubleFirst(), component="worker")
    app.add_plugin(Exclaim(), ["task_executor_after_execute_result_replace"], component="worker")
    app.add_plugin(Decide(), ["task_executor_run_task_trigger_error"], component="worker")
    app.add_plugin(Broken(), ["worker_execute_before"], component="worker")


class Recorder(BasePlugin):
    """Writes down every trigger it sees (in whichever process fires it)."""

    def trigger(self, name, **kwargs):
        from apps.marks import mark

        mark(f"trigger {name}")


def install_recorder(app):
    for component in (None, "worker", "broker", "storage", "global_config"):
        app.add_plugin(Recorder(), component=component)
