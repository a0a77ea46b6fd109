"""The qtasks section of the Django admin: tasks, dead letters and queues of every configured
qtasks app, on any backend.

Each entry is a ``ModelAdmin`` of a model without a table whose views are replaced: they read
and act through ``qtasks.operator`` (the functions behind ``qtasks tasks ...`` and the web
dashboard). Viewing needs the model's view permission; acting (retry, cancel, requeue, delete,
purge) its change permission, a confirmation page, and Django's CSRF check.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from qtasks import operator
from qtasks.contrib.django.apps import configured
from qtasks.contrib.django.models import DeadLetter, Queue, Task

PAGE = 50


def _apps() -> dict[str, Any]:
    return configured()


def _chosen(request: HttpRequest) -> tuple[str, Any]:
    apps = _apps()
    if not apps:
        raise Http404("no qtasks app in settings.QTASKS")
    alias = request.GET.get("app") or request.POST.get("app") or \
        ("default" if "default" in apps else sorted(apps)[0])
    if alias not in apps:
        raise Http404(f"no qtasks app {alias!r}")
    return alias, apps[alias]


class _StoreAdmin(admin.ModelAdmin):
    """Views over a qtasks store instead of a table."""

    template: str = ""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        alias, _ = _chosen(request)
        return {**self.admin_site.each_context(request), "opts": self.model._meta,
                "title": title, "alias": alias, "aliases": sorted(_apps()),
                "can_act": self.has_change_permission(request), **extra}

    def _check(self, request: HttpRequest, act: bool = False) -> None:
        allowed = self.has_change_permission(request) if act else \
            self.has_view_or_change_permission(request)
        if not allowed:
            raise PermissionDenied

    def _back(self, request: HttpRequest, name: str, alias: str, *args: Any,
              **params: str) -> HttpResponseRedirect:
        url = reverse(f"{self.admin_site.name}:{name}", args=args)
        return HttpResponseRedirect(f"{url}?{urlencode({'app': alias, **params})}")

    def _confirm(self, request: HttpRequest, question: str, **fields: Any) -> HttpResponse:
        return TemplateResponse(request, "admin/qtasks/confirm.html", self._context(
            request, "Are you sure?", question=question, fields=fields))


@admin.register(Task)
class TaskAdmin(_StoreAdmin):
    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<uuid:uuid>/", wrap(self.detail_view), name="qtasks_task_detail"),
            path("<uuid:uuid>/<str:action>/", wrap(self.action_view), name="qtasks_task_action"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        self._check(request)
        alias, app = _chosen(request)
        q = request.GET
        uuid = (q.get("uuid") or "").strip()
        if uuid:
            try:
                if operator.find_task(app, uuid) is not None:
                    return self._back(request, "qtasks_task_detail", alias, operator._uuid(uuid))
            except ValueError:
                pass  # not a uuid: said below, as "no task"
            messages.warning(request, f"No task {uuid}.")
        status = q.get("status") or None
        if status is not None and status not in operator.STATUSES:
            status = None
        task_name = (q.get("task_name") or "").strip() or None
        queue = (q.get("queue") or "").strip() or None
        after = q.get("after") or None
        try:
            rows = operator.list_tasks(app, status=status, task_name=task_name, limit=PAGE + 1,
                                       after=after, queue=queue)
        except ValueError as exc:
            messages.error(request, str(exc))
            rows = []
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        filters = {k: v for k, v in (("app", alias), ("status", status),
                                     ("task_name", task_name), ("queue", queue)) if v}
        older = f"?{urlencode({**filters, 'after': str(rows[-1].uuid)})}" if more else None
        counts = operator.overview(app)[1]
        return TemplateResponse(request, "admin/qtasks/tasks.html", self._context(
            request, "Tasks", rows=[operator.task_summary(t) for t in rows], older=older,
            filters=filters, statuses=operator.STATUSES, counts=counts, first=after is None))

    def detail_view(self, request: HttpRequest, uuid: Any) -> HttpResponse:
        self._check(request)
        _, app = _chosen(request)
        task = operator.find_task(app, str(uuid))
        if task is None:
            raise Http404(f"no task {uuid}")
        return TemplateResponse(request, "admin/qtasks/task.html", self._context(
            request, f"Task {task.task_name}", task=operator.task_detail(task),
            can_retry=task.status in operator.RETRYABLE, can_cancel=task.status == "new"))

    def action_view(self, request: HttpRequest, uuid: Any, action: str) -> HttpResponse:
        self._check(request, act=True)
        alias, app = _chosen(request)
        if action not in ("retry", "cancel"):
            raise Http404("no such action")
        if request.method != "POST":
            question = (f"Run task {uuid} again, as a new task with the same arguments?"
                        if action == "retry" else
                        f"Cancel task {uuid}? It has not started; no worker will run it.")
            return self._confirm(request, question, app=alias)
        if action == "retry":
            try:
                new = operator.retry_task(app, str(uuid))
            except (LookupError, ValueError) as exc:
                messages.error(request, f"Not retried: {exc}")
                return self._back(request, "qtasks_task_detail", alias, uuid)
            messages.success(request, f"Retried as {new.uuid}.")
            return self._back(request, "qtasks_task_detail", alias, new.uuid)
        result = operator.cancel_task(app, str(uuid))
        if result.cancelled:
            messages.success(request, "Cancelled.")
        else:
            messages.error(request, f"Not cancelled: {result.reason}.")
        return self._back(request, "qtasks_task_detail", alias, uuid)


@admin.register(DeadLetter)
class DeadLetterAdmin(_StoreAdmin):
    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [path("<str:action>/", wrap(self.action_view), name="qtasks_dead_letters_action"),
                *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        self._check(request)
        _, app = _chosen(request)
        letters = app.client.dead_letters(200)
        return TemplateResponse(request, "admin/qtasks/dead_letters.html", self._context(
            request, "Dead letters", letters=letters, total=app.client.dead_letter_count()))

    def action_view(self, request: HttpRequest, action: str) -> HttpResponse:
        self._check(request, act=True)
        alias, app = _chosen(request)
        if action not in ("requeue", "delete"):
            raise Http404("no such action")
        source = request.POST if request.method == "POST" else request.GET
        every = source.get("all") == "1"
        uuids = [u for u in source.getlist("uuid") if u]
        if not every and not uuids:
            messages.warning(request, "Nothing was selected.")
            return self._back(request, "qtasks_deadletter_changelist", alias)
        if request.method != "POST":
            what = "every dead letter" if every else f"{len(uuids)} dead letter(s)"
            question = (f"Run the tasks of {what} again, each as a new task?"
                        if action == "requeue" else f"Delete {what} without running them?")
            return self._confirm(request, question, app=alias, uuid=uuids,
                                 all="1" if every else "")
        wanted = None if every else uuids
        if action == "requeue":
            done = operator.requeue_dead_letters(app, wanted)
            messages.success(request, f"Requeued {len(done.requeued)}.")
            for uuid, why in done.skipped[:10]:
                messages.warning(request, f"{uuid}: not requeued: {why}")
        else:
            messages.success(request, f"Deleted {operator.delete_dead_letters(app, wanted)}.")
        return self._back(request, "qtasks_deadletter_changelist", alias)


@admin.register(Queue)
class QueueAdmin(_StoreAdmin):
    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [path("purge/", wrap(self.purge_view), name="qtasks_queue_purge"),
                *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        self._check(request)
        _, app = _chosen(request)
        rows, counts, workers = operator.overview(app)
        return TemplateResponse(request, "admin/qtasks/queues.html", self._context(
            request, "Queues", rows=rows, counts=counts, workers=workers,
            where=app.backend.describe()))

    def purge_view(self, request: HttpRequest) -> HttpResponse:
        self._check(request, act=True)
        alias, app = _chosen(request)
        source = request.POST if request.method == "POST" else request.GET
        queue = source.get("queue") or ""
        if not queue:
            raise Http404("a queue is needed")
        if request.method != "POST":
            waiting = operator.waiting_in(app, queue)
            return self._confirm(request, f"Drop the {waiting} waiting task(s) of queue "
                                          f"{queue!r}? Each is recorded as cancelled.",
                                 app=alias, queue=queue)
        gone = operator.purge_queue(app, queue)
        messages.success(request, f"Purged {len(gone)} waiting tasks from {queue!r}.")
        return self._back(request, "qtasks_queue_changelist", alias)
