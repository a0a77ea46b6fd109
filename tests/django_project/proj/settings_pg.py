"""The test project on PostgreSQL (127.0.0.1:5432, trust auth, database "test")."""

import os

from proj.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("QTASKS_TEST_PG_DB", "test"),
        "USER": os.environ.get("QTASKS_TEST_PG_USER", "postgres"),
        "HOST": "127.0.0.1",
        "PORT": "5432",
    }
}
