"""The Django app ``qtasks.contrib.django``: qtasks apps configured from ``settings.QTASKS``.

```text
INSTALLED_APPS = [..., "qtasks.contrib.django"]
QTASKS = {
    "default": "proj.qtasks:app",                 # an app you create yourself, or
    "reports": {"APP": "proj.qtasks:reports", "MODULES": ["reports"]},
    "scratch": {"NAME": "scratch", "BROKER_URL": "sqlite:///scratch.db"},
}
```

Each entry is ``module:attribute`` naming a qtasks app; or ``{"APP": "module:attribute",
"MODULES": [...], "AUTODISCOVER": bool}`` to choose the modules searched for it; or a dict of
options from which the app is created: ``BROKER_URL`` (required), ``NAME``, ``MODULES``
(default ``["tasks"]``), ``AUTODISCOVER`` (default True), ``CONFIG`` (``QueueConfig`` fields).
Unknown keys and a missing ``BROKER_URL`` raise ``ImproperlyConfigured``. When Django is
ready, every app's task modules are discovered (``autodiscover_tasks``).

``QTASKS_IMMEDIATE = True`` (for test settings; never implied by ``DEBUG``) makes every
configured app run each task inline when it is enqueued, in the caller's thread (and so in the
test's transaction), with the arguments and result encoded as in production; ``add_task``
returns the final record. Such records are not stored in the backend.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_OPTIONS = {"APP", "NAME", "BROKER_URL", "MODULES", "AUTODISCOVER", "CONFIG"}
_apps: dict[str, Any] = {}
_modules: dict[str, list[str]] = {}
loaded = False
"""True once ready() has read settings.QTASKS (every configured app is in ``_apps``)."""


def _load(alias: str, entry: Any) -> tuple[Any, list[str], bool]:
    from qtasks import QueueConfig, QueueTasks
    from qtasks.app import BaseQueueTasks

    if isinstance(entry, dict) and "APP" in entry:
        extra = set(entry) - {"APP", "MODULES", "AUTODISCOVER"}
        if extra:
            raise ImproperlyConfigured(f"QTASKS[{alias!r}]: with APP, only MODULES and "
                                       f"AUTODISCOVER may be given, not {sorted(extra)}")
        app, _, _ = _load(alias, entry["APP"])
        return app, list(entry.get("MODULES", ["tasks"])), bool(entry.get("AUTODISCOVER", True))
    if isinstance(entry, str):
        module_name, _, attr = entry.partition(":")
        try:
            app = getattr(importlib.import_module(module_name), attr or "app")
        except (ImportError, AttributeError) as exc:
            raise ImproperlyConfigured(f"QTASKS[{alias!r}] = {entry!r}: {exc}") from exc
        if not isinstance(app, BaseQueueTasks):
            raise ImproperlyConfigured(f"QTASKS[{alias!r}] = {entry!r} is not a qtasks app")
        return app, ["tasks"], True
    if not isinstance(entry, dict):
        raise ImproperlyConfigured(f"QTASKS[{alias!r}] must be 'module:app' or a dict of options")
    unknown = set(entry) - _OPTIONS
    if unknown:
        raise ImproperlyConfigured(f"QTASKS[{alias!r}]: unknown keys {sorted(unknown)}; "
                                   f"known: {sorted(_OPTIONS)}")
    if not entry.get("BROKER_URL"):
        raise ImproperlyConfigured(f"QTASKS[{alias!r}] needs a BROKER_URL (for example "
                                   "'sqlite:///qtasks.sqlite3' or 'memory://')")
    try:
        config = QueueConfig(**entry.get("CONFIG", {}))
    except TypeError as exc:
        raise ImproperlyConfigured(f"QTASKS[{alias!r}]['CONFIG']: {exc}") from exc
    app = QueueTasks(name=entry.get("NAME", alias), broker_url=entry["BROKER_URL"],
                     config=config)
    return app, list(entry.get("MODULES", ["tasks"])), bool(entry.get("AUTODISCOVER", True))


def get_app(alias: str = "default") -> Any:
    """The qtasks app configured as ``settings.QTASKS[alias]``."""
    try:
        return _apps[alias]
    except KeyError:
        raise ImproperlyConfigured(f"no qtasks app {alias!r} in settings.QTASKS "
                                   f"(configured: {sorted(_apps)})") from None


def configured() -> dict[str, Any]:
    """Every configured qtasks app by alias."""
    return dict(_apps)


def _migrate_postgres(verbosity: int = 1, **_: Any) -> None:
    """After ``manage.py migrate``: the qtasks tables of every configured app's PostgreSQL
    broker or result store, created or upgraded (``qtasks migrate``)."""
    urls = {url for app in _apps.values() for url in (app.broker_url, app.storage_url)
            if url and url.partition("://")[0].lower() in ("postgresql", "postgres")}
    if not urls:
        return
    from qtasks.backends.postgres import migrate
    from qtasks.backends.urls import redact

    for url in sorted(urls):
        before, after = migrate(url)
        if verbosity >= 1 and before != after:
            print(f"  qtasks: {redact(url)} migrated from schema version {before} to {after}")


class QTasksConfig(AppConfig):
    name = "qtasks.contrib.django"
    label = "qtasks"
    verbose_name = "qtasks"

    def ready(self) -> None:
        global loaded
        from qtasks.contrib.django.autodiscover import autodiscover_tasks
        from qtasks.testing.capture import set_immediate

        entries = getattr(settings, "QTASKS", None) or {}
        if not isinstance(entries, dict):
            raise ImproperlyConfigured("settings.QTASKS must be a dict: alias -> app")
        immediate = getattr(settings, "QTASKS_IMMEDIATE", False) is True
        for alias, entry in entries.items():
            app, modules, discover = _load(alias, entry)
            set_immediate(app, immediate)  # tests: run inline at enqueue (never implied by DEBUG)
            _apps[alias] = app
            _modules[alias] = modules
            if discover:
                autodiscover_tasks(app, modules)
        loaded = True
        from django.db.models.signals import post_migrate

        # sent once per migrate run for this app (Django sends it to apps with a models module)
        post_migrate.connect(_migrate_postgres, sender=self,
                             dispatch_uid="qtasks.contrib.django.migrate_postgres")
        backend = sys.modules.get("qtasks.contrib.django.backend")
        if backend is not None:  # django.tasks tasks defined before their app was configured
            backend.register_pending()
