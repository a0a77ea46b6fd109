"""The dashboard's ASGI app: pages, the live overview's event stream, and the actions.

Everything it reads or does goes through ``qtasks.operator`` and the app's blocking client,
in Starlette's thread pool, so it works on every backend the contract covers. Pages render on
the server (Jinja2, autoescaped); a little plain JavaScript keeps the overview live over
server-sent events. Every action is a POST from a confirmation page that carries a CSRF token;
``read_only`` removes the actions altogether.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from qtasks import operator
from qtasks.core.codec import dumps
from qtasks.dashboard.history import History
from qtasks.dashboard.security import (
    CSRF_COOKIE,
    Auth,
    AuthMiddleware,
    csrf_ok,
    new_csrf_token,
)

if TYPE_CHECKING:
    from qtasks.app import BaseQueueTasks

HERE = Path(__file__).parent
log = logging.getLogger("qtasks.dashboard")
PAGE_SIZES = (20, 50, 100)
RECENT = 10  # newest records on the overview


class Dashboard:
    """What the pages share: the qtasks app, the options, and the charts' history."""

    def __init__(self, app: BaseQueueTasks, *, read_only: bool = False,
                 interval: float = 1.0) -> None:
        self.app = app
        self.read_only = read_only
        self.interval = interval
        self.history = History()
        self.where = app.backend.describe()
        self._lock = threading.Lock()
        self._last: tuple[dict[str, Any], str] | None = None

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return run_in_threadpool(fn, *args, **kwargs)

    # -- what the overview shows --------------------------------------------------------------

    def current(self) -> tuple[dict[str, Any], str]:
        """The latest snapshot and its JSON, made at most once an interval however many pages
        are open (blocking: run it in the thread pool)."""
        with self._lock:
            if self._last is None or time.time() - self._last[0]["at"] >= self.interval * 0.9:
                snap = self.snapshot()
                self._last = (snap, dumps(snap))
            return self._last

    def snapshot(self) -> dict[str, Any]:
        """The overview's data (blocking: run it in the thread pool)."""
        now = time.time()
        queues, totals, workers = operator.overview(self.app)
        if now - self.history.last_reading >= min(self.interval, 5.0) * 0.9:
            self.history.observe(workers, now)
        recent = operator.list_tasks(self.app, limit=RECENT)
        return {
            "at": now,
            "totals": totals,
            "queues": queues,
            "workers": [{"id": w.id, "hostname": w.hostname, "pid": w.pid,
                         "concurrency": w.concurrency, "running": w.running,
                         "queues": ", ".join(w.queues), "finished": w.finished,
                         "failed": w.failed, "started_at": operator.when(w.started_at),
                         "heartbeat_ago": round(max(0.0, now - w.heartbeat_at), 1)}
                        for w in workers],
            "recent": [operator.task_summary(t) for t in recent],
            "series": self.history.series(now),
        }


def _cursor_text(row: dict[str, Any]) -> str:
    return f"{row['created_at']!r}_{row['uuid']}"


def _parse_cursor(text: str | None) -> tuple[float, str] | None:
    if not text:
        return None
    created, sep, uuid = text.partition("_")
    try:
        if not sep:
            raise ValueError
        return float(created), operator._uuid(uuid)
    except ValueError:
        raise HTTPException(400, "bad cursor") from None


def _parse_time(text: str | None, name: str) -> float | None:
    if not text:
        return None
    try:
        return operator.parse_when(text)
    except ValueError:
        raise HTTPException(400, f"{name}: not a time") from None


def _pretty(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def build(app: BaseQueueTasks, *, auth: Auth | None = None, read_only: bool = False,
          interval: float = 1.0) -> Starlette:
    """The dashboard of ``app`` as an ASGI app; mount it anywhere (its links are relative to
    where it is mounted)."""
    board = Dashboard(app, read_only=read_only, interval=interval)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["pretty"] = _pretty
    env.filters["when"] = operator.when
    templates = Jinja2Templates(env=env)

    def render(request: Request, name: str, status_code: int = 200,
               **context: Any) -> Response:
        token = request.cookies.get(CSRF_COOKIE) or new_csrf_token()
        context.update(board=board, csrf=token, flash=request.query_params.get("done"),
                       app_name=app.name)
        response = templates.TemplateResponse(request, name, context, status_code=status_code)
        if request.cookies.get(CSRF_COOKIE) != token:
            response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict",
                                path=request.scope.get("root_path") or "/")
        response.headers["content-security-policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "frame-ancestors 'none'; form-action 'self'")
        response.headers["x-content-type-options"] = "nosniff"
        response.headers["referrer-policy"] = "same-origin"
        return response

    async def checked_form(request: Request) -> Any:
        """The POSTed form, once its CSRF token and the dashboard's mode allow it."""
        if board.read_only:
            raise HTTPException(403, "this dashboard is read-only")
        form = await request.form()
        if not csrf_ok(request.cookies.get(CSRF_COOKIE), form.get("csrf")):  # type: ignore[arg-type]
            raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
        return form

    def back(request: Request, route: str, message: str, **params: Any) -> RedirectResponse:
        url = str(request.url_for(route, **params))
        return RedirectResponse(f"{url}?{urlencode({'done': message})}", status_code=303)

    # -- pages ------------------------------------------------------------------------------

    async def overview(request: Request) -> Response:
        snap, _ = await board.call(board.current)
        return render(request, "overview.html", snap=snap, interval=board.interval)

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            yield f"retry: {int(board.interval * 2000)}\n\n"
            while True:
                if await request.is_disconnected():
                    return
                _, data = await board.call(board.current)
                yield f"event: snapshot\ndata: {data}\n\n"
                await asyncio.sleep(board.interval)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store",
                                          "x-accel-buffering": "no"})

    async def tasks(request: Request) -> Response:
        q = request.query_params
        uuid = (q.get("uuid") or "").strip()
        if uuid:
            try:
                found = await board.call(operator.find_task, app, uuid)
            except ValueError:
                found = None
            if found is not None:
                return RedirectResponse(request.url_for("task", uuid=str(found.uuid)), 303)
        status = q.get("status") or None
        if status is not None and status not in operator.STATUSES:
            raise HTTPException(400, "unknown status")
        task_name = (q.get("task_name") or "").strip() or None
        queue = (q.get("queue") or "").strip() or None
        since = _parse_time(q.get("since"), "since")
        until = _parse_time(q.get("until"), "until")
        try:
            limit = int(q.get("limit") or PAGE_SIZES[0])
        except ValueError:
            raise HTTPException(400, "bad limit") from None
        limit = min(max(limit, 1), PAGE_SIZES[-1])
        cursor = _parse_cursor(q.get("cursor"))
        rows = await board.call(app.client.search, status=status, task_name=task_name,
                                limit=limit + 1, before=until, cursor=cursor, queue=queue)
        more = len(rows) > limit
        rows = rows[:limit]
        if since is not None:
            kept = [r for r in rows if r["created_at"] >= since]
            more = more and len(kept) == len(rows)
            rows = kept
        filters = {k: v for k, v in (("status", status), ("task_name", task_name), ("queue", queue),
                                     ("since", q.get("since")), ("until", q.get("until")),
                                     ("limit", str(limit))) if v}
        older = (str(request.url_for("tasks")) + "?"
                 + urlencode({**filters, "cursor": _cursor_text(rows[-1])})) if more else None
        summaries = [operator.task_summary(operator.record_from_row(r, app)) for r in rows]
        return render(request, "tasks.html", rows=summaries, older=older, filters=filters,
                      statuses=operator.STATUSES, page_sizes=PAGE_SIZES,
                      missing=uuid if uuid else None, first=cursor is None)

    async def task(request: Request) -> Response:
        uuid = request.path_params["uuid"]
        try:
            found = await board.call(operator.find_task, app, uuid)
        except ValueError:
            raise HTTPException(404, "not a task id") from None
        if found is None:
            return render(request, "missing.html", status_code=404, uuid=uuid)
        detail = operator.task_detail(found)
        chain = await board.call(_retry_chain, app, found)
        seconds = (found.updated_at - found.created_at).total_seconds()
        return render(request, "task.html", task=detail, chain=chain, seconds=seconds,
                      can_retry=found.status in operator.RETRYABLE,
                      can_cancel=found.status == "new")

    async def dead_letters(request: Request) -> Response:
        try:
            limit = min(max(int(request.query_params.get("limit") or 100), 1), 1000)
        except ValueError:
            raise HTTPException(400, "bad limit") from None
        letters, total = await board.call(_letters, app, limit)
        return render(request, "dead_letters.html", letters=letters, total=total, limit=limit)

    async def confirm(request: Request) -> Response:
        """The question every action asks first, with the form that does it."""
        if board.read_only:
            raise HTTPException(403, "this dashboard is read-only")
        action = request.path_params["action"]
        q = request.query_params
        uuids = [u for u in q.getlist("uuid") if u]
        for u in uuids:
            try:
                operator._uuid(u)
            except ValueError:
                raise HTTPException(400, "not a task id") from None
        every = q.get("all") == "1"
        queue = q.get("queue") or ""
        if action in ("retry", "cancel"):
            if len(uuids) != 1:
                raise HTTPException(400, "one task id is needed")
            target = request.url_for("do_task", uuid=uuids[0], action=action)
        elif action in ("requeue", "delete"):
            if not uuids and not every:
                return back(request, "dead_letters", "nothing was selected")
            target = request.url_for("do_letters", action=action)
        elif action == "purge":
            if not queue:
                raise HTTPException(400, "a queue is needed")
            target = request.url_for("do_purge")
        else:
            raise HTTPException(404, "no such action")
        waiting = await board.call(operator.waiting_in, app, queue) if queue else 0
        return render(request, "confirm.html", action=action, uuids=uuids, every=every,
                      queue=queue, waiting=waiting, target=str(target))

    # -- actions ------------------------------------------------------------------------------

    async def do_task(request: Request) -> Response:
        await checked_form(request)
        uuid, action = request.path_params["uuid"], request.path_params["action"]
        if action == "retry":
            try:
                new = await board.call(operator.retry_task, app, uuid)
            except (LookupError, ValueError) as exc:
                return back(request, "task", f"not retried: {exc}", uuid=uuid)
            return back(request, "task", f"retried as {new.uuid}", uuid=str(new.uuid))
        if action == "cancel":
            result = await board.call(operator.cancel_task, app, uuid)
            return back(request, "task", result.reason if result.cancelled
                        else f"not cancelled: {result.reason}", uuid=uuid)
        raise HTTPException(404, "no such action")

    async def do_letters(request: Request) -> Response:
        form = await checked_form(request)
        action = request.path_params["action"]
        uuids = None if form.get("all") == "1" else [str(u) for u in form.getlist("uuid")]
        if action == "requeue":
            done = await board.call(operator.requeue_dead_letters, app, uuids)
            message = f"requeued {len(done.requeued)}"
            if done.skipped:
                message += f", left {len(done.skipped)}: " + "; ".join(
                    f"{u}: {why}" for u, why in done.skipped[:5])
        elif action == "delete":
            gone = await board.call(operator.delete_dead_letters, app, uuids)
            message = f"deleted {gone}"
        else:
            raise HTTPException(404, "no such action")
        return back(request, "dead_letters", message)

    async def do_purge(request: Request) -> Response:
        form = await checked_form(request)
        queue = str(form.get("queue") or "")
        if not queue:
            raise HTTPException(400, "a queue is needed")
        gone = await board.call(operator.purge_queue, app, queue)
        return back(request, "overview", f"purged {len(gone)} waiting tasks from {queue!r}")

    async def failure(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "error")
        return render(request, "error.html", status_code=status, status=status, detail=detail)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # standing alone (not mounted), keep the charts' history even with no page open
        async def sample() -> None:
            while True:
                try:
                    workers = await board.call(app.client.workers)
                    board.history.observe(workers)
                except Exception:  # the backend is down: the pages say so when opened
                    log.warning("the dashboard could not read the workers", exc_info=True)
                await asyncio.sleep(max(board.interval, 2.0))

        sampler = asyncio.create_task(sample())
        try:
            yield
        finally:
            sampler.cancel()

    routes = [
        Route("/", overview, name="overview"),
        Route("/events", events, name="events"),
        Route("/tasks", tasks, name="tasks"),
        Route("/tasks/{uuid}", task, name="task"),
        Route("/dead-letters", dead_letters, name="dead_letters"),
        Route("/confirm/{action}", confirm, name="confirm"),
        Route("/tasks/{uuid}/{action}", do_task, methods=["POST"], name="do_task"),
        Route("/dead-letters/{action}", do_letters, methods=["POST"], name="do_letters"),
        Route("/purge", do_purge, methods=["POST"], name="do_purge"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    asgi = Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: failure})
    asgi.state.dashboard = board
    if auth is not None and auth.required:
        asgi.add_middleware(AuthMiddleware, auth=auth)
    return asgi


def _retry_chain(app: BaseQueueTasks, task: Any) -> list[dict[str, Any]]:
    """The tasks before and after ``task`` in its retry chain, oldest first (at most 10 on
    either side)."""
    before = _walk(app, task.retry_parent_uuid, "retry_parent_uuid")[::-1]
    after = _walk(app, task.retry_child_uuid, "retry_child_uuid")
    if not before and not after:
        return []
    return [*before, {**operator.task_summary(task), "current": True}, *after]


def _walk(app: BaseQueueTasks, uuid: Any, link: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while uuid is not None and len(found) < 10:
        task = operator.find_task(app, str(uuid))
        if task is None:
            break
        found.append(operator.task_summary(task))
        uuid = getattr(task, link)
    return found


def _letters(app: BaseQueueTasks, limit: int) -> tuple[list[dict[str, Any]], int]:
    letters = app.client.dead_letters(limit)
    total = app.client.dead_letter_count()
    return [{"id": d.id, "uuid": d.uuid, "task_name": d.task_name, "reason": d.reason,
             "deliveries": d.deliveries, "created_at": operator.when(d.created_at)}
            for d in letters], total

