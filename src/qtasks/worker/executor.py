"""Running one delivery to an :class:`Outcome`. Never raises for anything a task or message does.

Malformed messages, unknown task names and results JSON cannot carry become ``error`` records
that are also dead-lettered; an exception raised by the task is an ordinary ``error`` record with
its traceback; ``TaskCancelError`` gives ``cancel``. Task names are looked up only in the app's
own registry; nothing in a message is ever imported.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import traceback
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from qtasks.backends.base import Delivery, Outcome
from qtasks.core.codec import decode_envelope, dumps, encode_result
from qtasks.exceptions import MalformedMessage, TaskCancelError

if TYPE_CHECKING:
    from qtasks.app import BaseQueueTasks

log = logging.getLogger("qtasks.worker")


def _set_aside(delivery: Delivery, reason: str, **fields: object) -> Outcome:
    uuid = fields.pop("uuid", None) or delivery.uuid or str(uuid4())
    return Outcome(delivery=delivery, uuid=str(uuid), status="error", traceback=reason,
                   dead_letter=reason, task_name=str(fields.pop("task_name", "<malformed>")),
                   priority=delivery.priority, **fields)  # type: ignore[arg-type]


async def execute(app: BaseQueueTasks, delivery: Delivery, pool: Executor) -> Outcome:
    """Decode, look up, run and encode one delivery."""
    try:
        env = decode_envelope(delivery.payload)
    except MalformedMessage as exc:
        log.error("set aside a malformed message (queue id %s): %s", delivery.tag, exc)
        return _set_aside(delivery, f"MalformedMessage: {exc}")
    # The record normally exists already (enqueue wrote it), so the arguments are sent again
    # only with the rare outcomes that might have to create it.
    base = {"uuid": str(env.uuid), "task_name": env.task_name, "created_at": env.created_at}

    def full() -> dict[str, Any]:
        return {**base, "args_json": dumps(env.args), "kwargs_json": dumps(env.kwargs)}

    definition = app.tasks.get(env.task_name)
    if definition is None:
        reason = (f"UnknownTaskError: task {env.task_name!r} is not registered in app "
                  f"{app.name!r} (is the module defining it imported by the worker?)")
        log.error("task %s: %s", env.uuid, reason)
        return _set_aside(delivery, reason, **full())

    done = functools.partial(Outcome, delivery=delivery, priority=env.priority, **base)
    try:
        if definition.awaiting:
            result = await definition.func(*env.args, **env.kwargs)
        else:
            call = functools.partial(definition.func, *env.args, **env.kwargs)
            ctx = contextvars.copy_context()
            result = await asyncio.get_running_loop().run_in_executor(pool, ctx.run, call)
    except TaskCancelError as exc:
        reason = str(exc) or f"{env.task_name}.cancel"
        return done(status="cancel", extra_json=dumps({"cancel_reason": reason}))
    except (Exception, SystemExit, KeyboardInterrupt):
        # SystemExit/KeyboardInterrupt raised *by the task* are its failure, not the worker's.
        text = traceback.format_exc()
        log.error("task %s (%s) failed:\n%s", env.task_name, env.uuid, text)
        return done(status="error", traceback=text)
    try:
        returning = encode_result(result)
    except TypeError as exc:
        reason = f"ResultEncodingError: {exc}"
        log.error("task %s (%s): %s", env.task_name, env.uuid, reason)
        return _set_aside(delivery, reason, **full())
    return done(status="success", returning_json=returning)
