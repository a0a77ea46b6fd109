"""Tasks written with Django's own ``@task`` (django.tasks on Django 6, the backport on 5.2)."""

import asyncio
import os
from pathlib import Path

try:
    from django.tasks import task
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import task
    from django_tasks.signals import task_enqueued, task_finished, task_started

LOG = Path(os.environ["QTASKS_TEST_DIR"]) / "mailing.log"


def note(line: str) -> None:
    with LOG.open("a") as out:
        out.write(f"{line}\n")


@task
def add(a, b):
    return a + b


@task
def ranked(label):
    note(f"ran {label}")
    return label


@task
def fail(message):
    raise ValueError(message)


@task
async def aadd(a, b):
    await asyncio.sleep(0)
    return a + b


@task(takes_context=True)
def whoami(context, tag):
    result = context.task_result
    return {"id": result.id, "attempt": context.attempt, "tag": tag,
            "priority": result.task.priority, "queue": result.task.queue_name,
            "status": result.status, "worker_ids": result.worker_ids}


@task(queue_name="emails")
def send(to):
    return f"sent to {to}"


@task
def count_orders():
    from shop.models import Order

    return Order.objects.filter(total__gte=0).count()  # the ORM, read-only (shared test DB)


def _started(sender, task_result, **kwargs):
    note(f"started {task_result.id} {task_result.status} {sender.__name__}")


def _finished(sender, task_result, **kwargs):
    note(f"finished {task_result.id} {task_result.status}")


def _enqueued(sender, task_result, **kwargs):
    note(f"enqueued {task_result.id} {task_result.status}")


task_started.connect(_started, dispatch_uid="mailing-started")
task_finished.connect(_finished, dispatch_uid="mailing-finished")
task_enqueued.connect(_enqueued, dispatch_uid="mailing-enqueued")
