"""``autodiscover_tasks``: import ``<app>.<module>`` for every installed Django app.

An app without such a module is normal and skipped. A module that exists but raises while it
is imported is a bug in that module: the error propagates, with the Django app and the module
named in a note (QTasks logged and swallowed it, so tasks silently went missing).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Sequence
from typing import Any

from django.apps import apps
from django.core.exceptions import AppRegistryNotReady

log = logging.getLogger("qtasks.contrib.django")


def autodiscover_tasks(app: Any, modules: Sequence[str] | None = None) -> None:
    """Import ``modules`` (default ``["tasks"]``) from every app in ``INSTALLED_APPS``.

    ``app`` is the qtasks app the tasks are for; it records which modules were imported.
    Call it once Django's app registry is ready (in an ``AppConfig.ready()``, or after
    ``django.setup()``); calling it again imports nothing new.
    """
    from qtasks.app import BaseQueueTasks

    if not isinstance(app, BaseQueueTasks):
        raise TypeError(f"autodiscover_tasks(app, ...): app must be a QueueTasks, not {app!r}")
    if isinstance(modules, str):
        raise TypeError("modules must be a list of module names, e.g. ['tasks']")
    if not apps.apps_ready:
        raise AppRegistryNotReady(
            "autodiscover_tasks() was called before Django loaded its apps; call it from an "
            "AppConfig.ready() method or after django.setup()"
        )
    for config in apps.get_app_configs():
        for module in modules or ["tasks"]:
            name = f"{config.name}.{module}"
            try:
                spec = importlib.util.find_spec(name)
            except ModuleNotFoundError:  # the app is a plain module, not a package
                spec = None
            if spec is None:
                continue  # this app has no such module: nothing to discover
            try:
                importlib.import_module(name)
            except Exception as exc:
                exc.add_note(f"qtasks autodiscover_tasks: importing module {module!r} of "
                             f"Django app {config.label!r} ({name}) failed")
                raise
            discovered = app.__dict__.setdefault("_discovered", [])
            if name not in discovered:
                discovered.append(name)
                log.debug("qtasks app %r: imported %s", app.name, name)
