"""Django integration: ``autodiscover_tasks(app, modules=None)``.

Django loads the apps of ``INSTALLED_APPS``; ``autodiscover_tasks`` imports a task module from
each of them; the ``@app.task`` decorators in those modules register the tasks. Nothing else
happens: no global state is set, nothing is returned, and only the app passed in is told which
modules were imported (for ``qtasks inspect``). Several qtasks apps in one project work, each
discovering its own modules.
"""

from __future__ import annotations

try:
    import django  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "qtasks.contrib.django needs Django: pip install 'qtasks[django]'"
    ) from exc

from qtasks.contrib.django.autodiscover import autodiscover_tasks

__all__ = ["autodiscover_tasks"]
