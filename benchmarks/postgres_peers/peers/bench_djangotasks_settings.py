"""Django settings of the ``djangotasks`` peer (``DJANGO_SETTINGS_MODULE=bench_djangotasks_settings``):
the database ``BENCH_PG_URL`` through psycopg 3, the django-tasks-db ``DatabaseBackend`` as the
default task backend. ``CONN_MAX_AGE`` is Django's default, 0 (a connection per request cycle:
``db_worker`` closes and reopens its connection around every task), unless
``BENCH_VARIANT=persistent`` (``CONN_MAX_AGE=None``, one connection kept for the process)."""

from urllib.parse import unquote, urlsplit

import bench_common as c

_url = urlsplit(c.PG_URL or "postgresql://postgres@127.0.0.1:5432/postgres")

SECRET_KEY = "bench-not-secret"
DEBUG = False  # db_worker's --reload defaults to DEBUG
USE_TZ = True
INSTALLED_APPS = ["django_tasks", "django_tasks_db"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",  # psycopg 3 when installed (Django 4.2+)
        "NAME": unquote(_url.path.lstrip("/")),
        "USER": unquote(_url.username or ""),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": _url.hostname or "",
        "PORT": str(_url.port or ""),
        "CONN_MAX_AGE": None if c.VARIANT == "persistent" else 0,
    }
}
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default"],
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
