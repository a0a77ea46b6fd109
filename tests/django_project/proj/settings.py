"""A small Django project for the integration tests."""

import os

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "proj.apps.ProjConfig",
    "shop",
    "billing.apps.BillingConfig",
    "notasks",
    "broken",
    "qtasks.contrib.django",
]
QTASKS = {
    "default": "proj.qtasks:app",
    "reports": {"APP": "proj.qtasks:reports", "MODULES": ["reports"]},
    "scratch": {"NAME": "scratch", "BROKER_URL": "memory://scratch", "MODULES": ["reports"]},
}
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(os.environ["QTASKS_TEST_DIR"], "django.sqlite3"),
    }
}
