"""The ``qtasks`` command (also ``python -m qtasks``).

    qtasks -A module:app run [--concurrency N] [--processes N] [--grace S] [--queues a,b]
    qtasks -A module:app info
    qtasks -A module:app dead-letters [--limit N] [--json]
    qtasks -A module:app stats inspect app|tasks|task [NAME ...] [json=true]
    qtasks -A module:app tasks list [--status S] [--task NAME] [--limit N] [--before T] [--json]
    qtasks -A module:app tasks show UUID [--json]
    qtasks -A module:app tasks cancel UUID [--json]
    qtasks -A module:app tasks retry UUID [--json]
    qtasks -A module:app queues [--json]
    qtasks -A module:app dead-letters requeue|delete (--all | UUID ...) [--json]
    qtasks -A module:app purge QUEUE [--yes] [--json]

``-A``/``--app``/``-app`` may come before or after the sub-command. ``module:attr`` is imported
with the current directory on ``sys.path``; if ``attr`` is a function it is called to build the
app; ``module`` alone means ``module:app``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from qtasks.core.config import LOOPS
from qtasks.exceptions import BackendError
from qtasks.version import __version__


class CommandError(Exception):
    """A mistake on the command line; printed without a traceback."""


def load_app(spec: str) -> Any:
    """Import ``module:attr`` and return the app it names."""
    from qtasks.app import BaseQueueTasks

    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        # a Django project: load its apps first, as manage.py would
        try:
            import django
        except ImportError:
            raise CommandError("DJANGO_SETTINGS_MODULE is set but Django is not installed "
                               "(pip install 'qtasks[django]')") from None
        django.setup()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise CommandError(f"cannot import module {module_name!r}: {exc}") from exc
        raise  # the module exists but one of its own imports failed: show the traceback
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise CommandError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(target, BaseQueueTasks) and callable(target):
        target = target()
    if not isinstance(target, BaseQueueTasks):
        raise CommandError(f"{spec!r} is a {type(target).__name__}, not a QueueTasks app")
    return target


def _parser() -> argparse.ArgumentParser:
    app_opt = argparse.ArgumentParser(add_help=False)
    app_opt.add_argument("-A", "--app", "-app", dest="app", default=argparse.SUPPRESS,
                         metavar="MODULE:APP", help="the app to use, e.g. myproject.tasks:app")
    app_opt.add_argument("--loglevel", default=argparse.SUPPRESS,
                         help="logging level (default INFO)")
    app_opt.add_argument("--log-format", dest="log_format", choices=("text", "json"),
                         default=argparse.SUPPRESS,
                         help="text (default), or json: one JSON object per line, and a line "
                              "per task outcome from workers")
    parser = argparse.ArgumentParser(prog="qtasks", parents=[app_opt],
                                     description="qtasks worker and tools")
    parser.add_argument("--version", action="version", version=f"qtasks {__version__}")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", parents=[app_opt], help="run a worker")
    run.add_argument("-c", "--concurrency", type=int, default=None,
                     help="tasks run at once per process (default: config.max_tasks_process, "
                          "or that of the app's worker object)")
    run.add_argument("-p", "--processes", type=int, default=1,
                     help="worker processes under a supervisor that restarts dead ones")
    run.add_argument("--grace", type=float, default=None,
                     help="seconds running tasks get after SIGTERM (default 30)")
    run.add_argument("-Q", "--queues", default=None, type=queue_list,
                     help="comma-separated queues to take tasks from (default: "
                          "config.worker_queues, ['default'])")
    run.add_argument("--timers", action="store_true",
                     help="also run the app's timers in this worker (in one process only)")
    run.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                     help="serve Prometheus metrics on this port (pip install "
                          "'qtasks[metrics]'); with --processes, the supervisor serves them")
    run.add_argument("--metrics-host", default="127.0.0.1",
                     help="the address the metrics are served on (default 127.0.0.1)")
    run.add_argument("--loop", choices=LOOPS, default=None,
                     help="the event loop: auto (uvloop when installed), asyncio or uvloop "
                          "(default: config.worker_event_loop, auto)")
    sub.add_parser("info", parents=[app_opt], help="show the app, its backend and its queue")
    stats = sub.add_parser("stats", parents=[app_opt], help="introspection (stats inspect ...)")
    stats.add_argument("--stats-app", default=None, metavar="MODULE:OBJ",
                       help="a SyncStats object to use instead of SyncStats(app)")
    stats.add_argument("action", choices=["inspect"])
    stats.add_argument("target", choices=["app", "tasks", "task"])
    stats.add_argument("extra", nargs="*", help="task names, and key=value options: json=true")
    migrate = sub.add_parser(
        "migrate", parents=[app_opt],
        help="create or upgrade the qtasks tables of a PostgreSQL database (the app's broker "
             "and result store, or --url)")
    migrate.add_argument("--url", default=None,
                         help="a postgresql:// URL (?schema=name picks the schema); default: "
                              "the app's PostgreSQL broker and storage URLs")
    dead = sub.add_parser("dead-letters", parents=[app_opt],
                          help="list dead-lettered tasks, requeue or delete them")
    dead.add_argument("action", nargs="?", choices=["list", "requeue", "delete"], default="list")
    dead.add_argument("uuids", nargs="*", metavar="UUID", help="the tasks to requeue or delete")
    dead.add_argument("--all", action="store_true", help="requeue or delete every dead letter")
    dead.add_argument("--limit", type=int, default=20, help="rows to list (default 20)")
    dead.add_argument("--json", action="store_true", help="print JSON")
    json_opt = argparse.ArgumentParser(add_help=False)
    json_opt.add_argument("--json", action="store_true", help="print JSON instead of a table")
    tasks = sub.add_parser("tasks", parents=[app_opt], help="look at task records and act on them")
    actions = tasks.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[app_opt, json_opt],
                                 help="records, newest first")
    listing.add_argument("--status", default=None, help="new, process, success, error or cancel")
    listing.add_argument("--task", default=None, dest="task_name", help="a task name")
    listing.add_argument("--queue", default=None, help="the queue the tasks were sent to")
    listing.add_argument("--limit", type=int, default=20, help="rows (default 20)")
    listing.add_argument("--before", default=None,
                         help="only records created before this time (epoch seconds or ISO "
                              "8601)")
    listing.add_argument("--after", default=None, metavar="UUID",
                         help="the next page: the records after this one (a page's last row)")
    show = actions.add_parser("show", parents=[app_opt, json_opt], help="one task's record")
    show.add_argument("uuid")
    cancel = actions.add_parser("cancel", parents=[app_opt, json_opt],
                                help="cancel a task no worker has started")
    cancel.add_argument("uuid")
    retry = actions.add_parser("retry", parents=[app_opt, json_opt],
                               help="run a failed or cancelled task again, as a new task")
    retry.add_argument("uuid")
    sub.add_parser("queues", parents=[app_opt, json_opt],
                   help="waiting tasks per queue, and the backend's totals")
    purge = sub.add_parser("purge", parents=[app_opt, json_opt],
                           help="drop every waiting task of a queue (recorded as cancelled)")
    purge.add_argument("queue")
    purge.add_argument("-y", "--yes", action="store_true", help="do not ask first")
    board = sub.add_parser("dashboard", parents=[app_opt],
                           help="serve the web dashboard (pip install 'qtasks[dashboard]')")
    board.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1: this machine only)")
    board.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    board.add_argument("--auth", metavar="USER:PASSWORD", default=None,
                       help="require HTTP Basic authentication (also QTASKS_DASHBOARD_AUTH)")
    board.add_argument("--token", default=None,
                       help="accept this bearer token, or ?token= once (also "
                            "QTASKS_DASHBOARD_TOKEN)")
    board.add_argument("--read-only", action="store_true", help="hide every action")
    board.add_argument("--interval", type=float, default=1.0,
                       help="seconds between the overview's live updates (default 1)")
    return parser


def _dashboard(app: Any, args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from qtasks.dashboard import create_app
    except ImportError as exc:
        raise CommandError(f"the dashboard needs its extra: pip install 'qtasks[dashboard]' "
                           f"({exc})") from None
    auth = args.auth or os.environ.get("QTASKS_DASHBOARD_AUTH") or None
    token = args.token or os.environ.get("QTASKS_DASHBOARD_TOKEN") or None
    if args.interval <= 0:
        raise CommandError("--interval must be positive")
    try:
        asgi = create_app(app, auth=auth, token=token, read_only=args.read_only,
                          interval=args.interval)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if not (auth or token) and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"qtasks: warning: the dashboard on {args.host} has no authentication: anyone "
              "who reaches the port can act on the queue (give --auth or --token)",
              file=sys.stderr)
    print(f"qtasks dashboard of {app.name} ({app.backend.describe()}) on "
          f"http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(asgi, host=args.host, port=args.port, log_level="warning")
    return 0


def queue_list(text: str) -> list[str]:
    """``"default,emails"`` -> ``["default", "emails"]``; an empty list is an error."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one queue name, e.g. --queues default")
    return names


def _info(app: Any) -> None:
    counts = app.client.stats().as_dict()
    print(f"app:          {app.name} (qtasks {__version__}, {type(app).__name__})")
    print(f"backend:      {app.backend.describe()}")
    if app.storage is not app.backend:
        print(f"store:        {app.storage.describe()} (records)")
    print(f"tasks:        {', '.join(sorted(app.tasks)) or '(none registered)'}")
    print("queue:        {queued} waiting, {running} claimed by workers".format(**counts))
    by_queue = counts.get("by_queue") or {}
    if set(by_queue) - {"default"}:
        print("waiting in:   " + ", ".join(f"{name} {n}" for name, n in by_queue.items()))
    print("records:      {records}; dead letters: {dead_letters}".format(**counts))
    print("workers:      {workers} alive".format(**counts))


def _dead_letters(app: Any, args: argparse.Namespace) -> int:
    """``qtasks dead-letters [list|requeue|delete]``."""
    if args.action == "list":
        if args.uuids or args.all:
            raise CommandError("list takes no UUID and no --all (did you mean requeue?)")
        _list_dead_letters(app, args.limit, args.json)
        return 0
    from qtasks import operator as ops

    if bool(args.uuids) == args.all:
        raise CommandError(f"dead-letters {args.action}: give --all or the UUIDs of the tasks")
    uuids = None if args.all else args.uuids
    total = app.client.stats().dead_letters if args.all else len(args.uuids)
    verb = "requeued" if args.action == "requeue" else "deleted"
    progress = ops.Progress(verb, total, sys.stderr)
    try:
        if args.action == "requeue":
            report = ops.requeue_dead_letters(app, uuids, progress.advance)
        else:
            count = ops.delete_dead_letters(app, uuids, progress.advance)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    progress.finish()
    if args.action == "delete":
        print(json.dumps({"deleted": count}) if args.json else f"deleted {count} dead letters")
        return 0
    if args.json:
        print(json.dumps({"requeued": [{"dead": old, "new": new} for old, new in report.requeued],
                          "skipped": [{"uuid": u, "reason": why} for u, why in report.skipped]},
                         indent=2))
    else:
        for old, new in report.requeued:
            print(f"{old} -> {new}")
        for uuid, why in report.skipped:
            print(f"{uuid}: not requeued: {why}")
        print(f"requeued {len(report.requeued)}, left {len(report.skipped)}")
    return 0 if not report.skipped else 1


def _purge(app: Any, args: argparse.Namespace) -> int:
    from qtasks import operator as ops

    waiting = ops.waiting_in(app, args.queue)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError(f"purge asks first, and no one can answer here: add --yes to "
                               f"drop the {waiting} waiting tasks of {args.queue!r}")
        answer = input(f"Drop the {waiting} waiting tasks of queue {args.queue!r}? "
                       "They are recorded as cancelled. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing purged")
            return 1
    progress = ops.Progress("purged", waiting, sys.stderr)
    gone = ops.purge_queue(app, args.queue, progress.advance)
    progress.finish()
    if args.json:
        print(json.dumps({"queue": args.queue, "purged": gone}))
    else:
        print(f"purged {len(gone)} tasks from queue {args.queue!r}")
    return 0


def _list_dead_letters(app: Any, limit: int, as_json: bool) -> None:
    letters = app.client.dead_letters(limit)
    if not letters:
        print("no dead letters")
    for d in letters:
        when = datetime.fromtimestamp(d.created_at, tz=UTC).isoformat(timespec="seconds")
        if as_json:
            print(json.dumps({"id": d.id, "uuid": d.uuid, "task_name": d.task_name,
                              "reason": d.reason, "deliveries": d.deliveries, "at": when,
                              "payload": d.payload}))
        else:
            print(f"{when}  {d.uuid or '-'}  {d.task_name or '-'}  deliveries={d.deliveries}\n"
                  f"    {d.reason}")


def _tasks(app: Any, args: argparse.Namespace) -> int:
    """``qtasks tasks list|show|cancel``; 1 when the task asked for is missing or stays."""
    from qtasks import operator as ops

    try:
        if args.action == "list":
            before = ops.parse_when(args.before) if args.before else None
            found = ops.list_tasks(app, status=args.status, task_name=args.task_name,
                                   limit=args.limit, before=before, after=args.after,
                                   queue=args.queue)
            rows = [ops.task_summary(t) for t in found]
            if args.json:
                print(json.dumps(rows, indent=2))
            elif rows:
                print(ops.table(rows, ["uuid", "task_name", "status", "queue", "priority",
                                       "created_at", "updated_at"]))
            else:
                print("no tasks")
            return 0
        if args.action == "show":
            task = ops.find_task(app, args.uuid)
            if task is None:
                raise CommandError(f"no task {args.uuid}")
            detail = ops.task_detail(task)
            if args.json:
                print(json.dumps(detail, indent=2, default=str))
            else:
                for key, value in detail.items():
                    if key == "traceback" and value:
                        print("traceback:\n" + "\n".join("    " + line
                                                         for line in value.splitlines()))
                    elif key != "traceback":
                        shown = value if isinstance(value, str) or value is None else \
                            json.dumps(value, default=str)
                        print(f"{key + ':':19} {'-' if shown is None else shown}")
            return 0
        if args.action == "retry":
            try:
                new = ops.retry_task(app, args.uuid)
            except LookupError as exc:
                raise CommandError(str(exc.args[0])) from None
            if args.json:
                print(json.dumps({"uuid": args.uuid, "new": str(new.uuid)}))
            else:
                print(f"{args.uuid} -> {new.uuid} (a new task, queued)")
            return 0
        result = ops.cancel_task(app, args.uuid)
        if args.json:
            print(json.dumps({"uuid": args.uuid, "cancelled": result.cancelled,
                              "status": result.status, "reason": result.reason}))
        else:
            print(f"{args.uuid}: {result.reason}")
        return 0 if result.cancelled else 1
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _queues(app: Any, as_json: bool) -> None:
    from qtasks import operator as ops

    rows, totals = ops.queue_rows(app)
    if as_json:
        print(json.dumps({"queues": rows, "totals": totals}, indent=2))
        return
    print(ops.table(rows, ["queue", "waiting"]))
    print("\n{queued} waiting ({delayed} of them delayed), {running} claimed by workers; "
          "{records} records, {dead_letters} dead letters, {workers} live workers"
          .format(**totals))


def _value(text: str) -> Any:
    low = text.lower()
    if low in {"true", "false"}:
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue  # not this kind of number; try the next, else keep the text
    return text


def _stats(app: Any, stats_spec: str | None, target: str, extra: list[str]) -> str:
    from qtasks.stats import SyncStats

    stats = SyncStats(app)
    if stats_spec:
        module_name, _, attr = stats_spec.partition(":")
        stats = getattr(importlib.import_module(module_name), attr or "stats")
    positional = [e for e in extra if "=" not in e]
    options = {k: _value(v) for k, _, v in (e.partition("=") for e in extra if "=" in e)}
    inspected = stats.inspect()
    try:
        return getattr(inspected, target)(*positional, **options)
    except KeyError as exc:
        raise CommandError(str(exc.args[0])) from None
    except TypeError as exc:
        raise CommandError(f"stats inspect {target}: {exc}") from None


def _migrate(urls: list[str]) -> int:
    """``qtasks migrate``: each PostgreSQL URL's tables created or brought up to date."""
    from qtasks.backends.urls import redact

    targets = [u for u in urls if u.partition("://")[0].lower() in ("postgresql", "postgres")]
    if not targets:
        print("qtasks: error: nothing to migrate: no postgresql:// URL (give --url, or an app "
              "whose broker_url or storage_url is one)", file=sys.stderr)
        return 2
    try:
        from qtasks.backends.postgres import migrate
    except ImportError as exc:
        print(f"qtasks: error: needs psycopg 3: pip install 'qtasks[postgres]' ({exc})",
              file=sys.stderr)
        return 2
    for url in targets:
        try:
            before, after = migrate(url)
        except BackendError as exc:
            print(f"qtasks: error: {exc}", file=sys.stderr)
            return 2
        state = "up to date" if before == after else f"migrated from {before} to {after}"
        print(f"{redact(url)}: schema version {after} ({state})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.loglevel = getattr(args, "loglevel", "INFO")
    args.log_format = getattr(args, "log_format", "text")
    from qtasks.logformat import configure

    configure(args.loglevel.upper(), args.log_format)
    if not args.command:
        parser.print_help()
        return 0
    if args.command == "migrate" and args.url:
        return _migrate([args.url])
    if not getattr(args, "app", None):
        parser.error("the app is required: qtasks -A module:app " + args.command)
    try:
        if args.command == "run" and args.processes > 1:
            from qtasks.worker.supervisor import Supervisor

            child = ["--loglevel", args.loglevel, "--log-format", args.log_format]
            if args.concurrency is not None:
                child += ["--concurrency", str(args.concurrency)]
            if args.grace is not None:
                child += ["--grace", str(args.grace)]
            if args.queues:
                child += ["--queues", ",".join(args.queues)]
            if args.loop:
                child += ["--loop", args.loop]
            if args.metrics_port is not None:
                child += ["--metrics-port", str(args.metrics_port)]
            grace = args.grace if args.grace is not None else 30.0
            first_only = ["--timers"] if args.timers else []
            supervisor = Supervisor(args.app, args.processes, child, grace, first_only)
            if args.metrics_port is not None:
                try:
                    supervisor.serve_metrics(load_app(args.app), args.metrics_port,
                                             args.metrics_host)
                except RuntimeError as exc:
                    raise CommandError(str(exc)) from None
            return supervisor.run()
        app = load_app(args.app)
        if args.command == "migrate":
            return _migrate([url for url in dict.fromkeys((app.broker_url, app.storage_url))
                             if url])
        if args.command == "run":
            from qtasks.worker import loop_factory, run_worker

            try:  # a loop that cannot be had is a usage error, told before anything starts
                loop_factory(args.loop or app.config.worker_event_loop)
                if args.metrics_port is not None:
                    from qtasks.metrics import start_worker_metrics

                    start_worker_metrics(app, args.metrics_port, args.metrics_host)
            except (RuntimeError, ValueError) as exc:
                raise CommandError(str(exc)) from None
            run_worker(app, args.concurrency, args.grace, args.timers, args.queues, args.loop)
        if args.command == "info":
            _info(app)
        elif args.command == "dead-letters":
            return _dead_letters(app, args)
        elif args.command == "stats":
            print(_stats(app, args.stats_app, args.target, args.extra))
        elif args.command == "tasks":
            return _tasks(app, args)
        elif args.command == "queues":
            _queues(app, args.json)
        elif args.command == "purge":
            return _purge(app, args)
        elif args.command == "dashboard":
            return _dashboard(app, args)
    except (CommandError, BackendError) as exc:
        print(f"qtasks: error: {exc}", file=sys.stderr)
        return 2
    return 0
