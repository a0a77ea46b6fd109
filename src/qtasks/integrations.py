"""Which integrations qtasks installs by itself, and when: the one table of them.

An integration is a module with ``install(hooks)``: it adds its layers to the process's hooks
(``qtasks.core.hooks.process_hooks``). It is installed once per process, the first time the app
enqueues or a worker starts after the library it serves has been imported, so a process that
never imports Django never loads qtasks' Django integration. The app and the worker know these
modules only by name: they import nothing from ``qtasks.contrib``.

Other integrations (``qtasks.testing``'s capture and immediate modes) are switched on for one
app by the code that wants them, in ``app.hooks``.
"""

from __future__ import annotations

import importlib
import sys

from qtasks.core.hooks import process_hooks

# library that must be imported already -> the integration module that serves it
BUILT_IN: dict[str, str] = {
    "django": "qtasks.contrib.django.integration",
}

_installed: set[str] = set()


def activate() -> None:
    """Install each built-in integration whose library this process has imported (cheap when
    there is nothing new to install)."""
    if len(_installed) == len(BUILT_IN):
        return
    for library, module in BUILT_IN.items():
        if module not in _installed and library in sys.modules:
            _installed.add(module)
            importlib.import_module(module).install(process_hooks)


def installed() -> frozenset[str]:
    """The integration modules installed in this process."""
    return frozenset(_installed)
