"""The test project with Django's task framework on the qtasks backend (django.tasks)."""

import os

import django

from proj.settings import *  # noqa: F403
from proj.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "mailing"]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")  # the backport
TASKS = {
    "default": {
        "BACKEND": "qtasks.contrib.django.backend.QTasksBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {"APP": os.environ.get("TEST_QTASKS_TASKS_APP", "default")},
    },
    "oncommit": {
        "BACKEND": "qtasks.contrib.django.backend.QTasksBackend",
        "OPTIONS": {"APP": "proj.qtasks:app", "ENQUEUE_ON_COMMIT": True},
    },
}
QTASKS_IMMEDIATE = os.environ.get("TEST_QTASKS_IMMEDIATE") == "1"
