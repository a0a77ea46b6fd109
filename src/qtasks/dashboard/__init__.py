"""The web dashboard (``qtasks[dashboard]``): ``qtasks -A mod:app dashboard``, or mount
``create_app(app)`` in your own ASGI or Django project. See docs/features/dashboard.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtasks.dashboard.security import Auth

if TYPE_CHECKING:
    from qtasks.app import BaseQueueTasks

__all__ = ["Auth", "create_app"]


def create_app(app: BaseQueueTasks, *, auth: str | None = None, token: str | None = None,
               read_only: bool = False, interval: float = 1.0) -> Any:
    """The dashboard of the qtasks ``app`` as a Starlette (ASGI) app.

    ``auth`` is "user:password" for HTTP Basic, ``token`` a bearer token (either or both);
    with neither, anyone who can reach it may use it, so keep it on 127.0.0.1 or behind your
    own authentication. ``read_only`` hides every action. ``interval``: seconds between the
    overview's live updates.
    """
    from qtasks.dashboard.app import build

    return build(app, auth=Auth(basic=auth, token=token), read_only=read_only,
                 interval=interval)
