"""``python manage.py qtasks worker`` and ``python manage.py qtasks inspect``."""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from qtasks.cli import queue_list
from qtasks.contrib.django.apps import configured, get_app


class Command(BaseCommand):
    help = "Run a qtasks worker for this project, or show its qtasks apps and tasks."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        worker = sub.add_parser("worker", help="run a worker (Django is set up first)")
        worker.add_argument("--app", default="default", help="alias in settings.QTASKS")
        worker.add_argument("-c", "--concurrency", type=int, default=None)
        worker.add_argument("-p", "--processes", type=int, default=1)
        worker.add_argument("--grace", type=float, default=None,
                            help="seconds running tasks get after SIGTERM (default 30)")
        worker.add_argument("-Q", "--queues", default=None, type=queue_list,
                            help="comma-separated queues to take tasks from (default: "
                                 "config.worker_queues, ['default'])")
        worker.add_argument("--timers", action="store_true", help="also run the app's timers")
        worker.add_argument("--loglevel", default="INFO",
                            help="log level when the project's LOGGING sets none for qtasks")
        reload = worker.add_mutually_exclusive_group()
        reload.add_argument("--reload", dest="reload", action="store_true", default=None,
                            help="restart on code changes (default: when DEBUG is on)")
        reload.add_argument("--noreload", dest="reload", action="store_false")
        sub.add_parser("inspect", help="show the qtasks apps, their modules and tasks")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "inspect":
            self._inspect()
        else:
            self._worker(options)

    def _inspect(self) -> None:
        from qtasks.contrib.django.apps import _modules

        apps = configured()
        if not apps:
            self.stdout.write("settings.QTASKS configures no qtasks app")
        for alias, app in apps.items():
            self.stdout.write(f"[{alias}] {app.name}: {app.backend.describe()}")
            self.stdout.write(f"  modules searched: {', '.join(_modules.get(alias, []))}")
            found = app.__dict__.get("_discovered", [])
            self.stdout.write(f"  modules imported: {', '.join(found) or '(none)'}")
            for name in sorted(app.tasks):
                definition = app.tasks[name]
                func = definition.func
                queue = "" if definition.queue == "default" else f", queue {definition.queue}"
                self.stdout.write(f"  task {name} ({func.__module__}.{func.__qualname__}, "
                                  f"priority {definition.priority}{queue})")

    def _worker(self, options: dict[str, Any]) -> None:
        app = get_app(options["app"])
        if not logging.getLogger().handlers and not logging.getLogger("qtasks").handlers:
            # the project's LOGGING did not route qtasks' messages anywhere: show them
            logging.basicConfig(level=options["loglevel"].upper(),
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if options["processes"] > 1:
            from qtasks.worker.supervisor import Supervisor

            child = [sys.executable, sys.argv[0], "qtasks", "worker", "--app", options["app"],
                     "--noreload", "--loglevel", options["loglevel"]]
            for flag in ("concurrency", "grace"):
                if options[flag] is not None:
                    child += [f"--{flag}", str(options[flag])]
            if options["queues"]:
                child += ["--queues", ",".join(options["queues"])]
            grace = options["grace"] if options["grace"] is not None else 30.0
            first_only = ["--timers"] if options["timers"] else []
            code = Supervisor("", options["processes"], [], grace, first_only,
                              command=child).run()
            raise SystemExit(code)
        reload = settings.DEBUG if options["reload"] is None else options["reload"]
        run = self._runner(app, options)
        if reload:
            from django.utils import autoreload

            self.stdout.write("qtasks worker: restarting on code changes (DEBUG)")
            autoreload.run_with_reloader(run)
        else:
            run()

    @staticmethod
    def _runner(app: Any, options: dict[str, Any]) -> Any:
        def run() -> None:
            from qtasks.worker import run_worker

            run_worker(app, options["concurrency"], options["grace"], options["timers"],
                       options["queues"])

        return run
