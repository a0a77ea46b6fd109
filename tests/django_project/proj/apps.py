from django.apps import AppConfig


class ProjConfig(AppConfig):
    name = "proj"

    def ready(self):
        from proj.qtasks import app, reports
        from qtasks.contrib.django import autodiscover_tasks

        autodiscover_tasks(app)
        autodiscover_tasks(reports, ["reports"])
