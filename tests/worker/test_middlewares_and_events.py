"""Middlewares and events, through real workers, in both flavours."""

import asyncio

from apps import ahooks_app, hooks_app
from helpers import clear_marks, marks, wait_until


def test_sync_middlewares_and_events(start_worker):
    app = hooks_app.app
    app.flush_all()
    clear_marks()
    worker = start_worker("apps.hooks_app:app")
    assert app.add_task("shaped", 5, timeout=10).returning == {"wrapped": 11}
    assert app.add_task("fails", timeout=10).status == "error"
    assert app.add_task("cancels", timeout=10).status == "cancel"
    seen = marks()
    # app-level before runs first, the task's own before next, then the task, then the
    # task's after, then the app's after (after-middlewares run in reverse order)
    assert seen.index("outer shaped") < seen.index("run shaped 10")
    assert seen.index("run shaped 10") < seen.index("outer-after shaped")
    assert "event worker_running 0" in seen
    assert "event task_running shaped" in seen
    assert "event task_success shaped {'wrapped': 11}" in seen
    assert "event task_error fails ValueError: boom" in seen
    assert "event task_cancel cancels stop here" in seen
    # a handler that raises is logged with its traceback; the task was not affected
    assert "RuntimeError: a broken handler must not break the task" in worker.output
    assert f"event starting {type(app.backend).__name__}" in seen
    worker.stop()
    seen = marks()
    assert seen.index("event worker_stopping") < seen.index("event stopping")


def test_async_middlewares_and_events(start_worker):
    app = ahooks_app.app
    asyncio.run(app.flush_all())
    clear_marks()
    worker = start_worker("apps.ahooks_app:app")
    assert asyncio.run(app.add_task("shaped", 5, timeout=10)).returning == {"wrapped": 11}
    assert asyncio.run(app.add_task("fails", timeout=10)).status == "error"
    assert "event task_success shaped {'wrapped': 11}" in marks()
    assert "event task_error fails error" in marks()
    worker.stop()
    wait_until(lambda: "event stopping" in marks(), what="the stopping event")


def test_unknown_event_name_is_an_error():
    import pytest

    with pytest.raises(AttributeError, match="task_sucess"):
        hooks_app.app.events.on.task_sucess()
