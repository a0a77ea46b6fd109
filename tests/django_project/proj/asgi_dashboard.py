"""The Django project with the qtasks dashboard mounted beside it, as docs/features/dashboard.md
shows for a project's asgi.py."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings_admin")
django_app = get_asgi_application()

from starlette.applications import Starlette  # noqa: E402 (after Django's setup)
from starlette.routing import Mount  # noqa: E402

from qtasks.contrib.django.apps import get_app  # noqa: E402
from qtasks.dashboard import create_app  # noqa: E402

application = Starlette(routes=[
    Mount("/ops/queue", app=create_app(get_app(), auth="ops:secret")),
    Mount("/", app=django_app),
])
