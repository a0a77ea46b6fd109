"""The qtasks section of the Django admin, on each backend: a staff user sees tasks, queues and
dead letters, and retries, cancels, requeues and purges after confirming (with Django's CSRF
check enforced)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django")

_RUN = f"adm{os.getpid()}x{os.urandom(3).hex()}"
REDIS = os.environ.get("QTASKS_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
POSTGRES = os.environ.get("QTASKS_TEST_POSTGRES_URL",
                          "postgresql://postgres@127.0.0.1:5432/test")

PROJECT = Path(__file__).parent / "django_project"

SCRIPT = r'''
import re
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
from django.test import Client
from qtasks.contrib.django.apps import get_app

app = get_app()
app.flush_all()

@app.task
def add(a, b):
    return a + b

User.objects.create_superuser("boss", "boss@example.com", "pw")
User.objects.create_user("nobody", "n@example.com", "pw", is_staff=True)
client = Client(enforce_csrf_checks=True)
assert client.login(username="boss", password="pw")


def confirm(url):
    """GET the confirmation page, then POST its form with its CSRF token."""
    page = client.get(url)
    assert page.status_code == 200, (url, page.status_code)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    fields = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.content.decode())
    data = {}
    for name, value in fields:
        data.setdefault(name, []).append(value)
    action = url.split("?")[0]
    return page, client.post(action, data, follow=True)


index = client.get("/admin/").content.decode()
for entry in ("Tasks", "Dead letters", "Queues"):
    assert entry in index, entry
assert "/admin/qtasks/task/" in index

hostile = app.add_task("add", "<script>alert(1)</script>", "x")
waiting = [app.add_task("add", i, 1, priority=i) for i in range(60)]
listing = client.get("/admin/qtasks/task/").content.decode()
assert "61 waiting" in listing, listing[:2000]
shown = re.findall(r"/admin/qtasks/task/([0-9a-f-]{36})/", listing)
assert len(shown) == 50
older = re.search(r'id="qtasks-older" href="([^"]+)"', listing).group(1).replace("&amp;", "&")
rest = re.findall(r"/admin/qtasks/task/([0-9a-f-]{36})/",
                  client.get("/admin/qtasks/task/" + older).content.decode())
assert len(rest) == 11 and not set(shown) & set(rest)
assert set(shown) | set(rest) == {str(t.uuid) for t in [hostile, *waiting]}

detail = client.get(f"/admin/qtasks/task/{hostile.uuid}/").content.decode()
assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail and "<script>alert(1)" not in detail

# a POST without the CSRF token is refused, and nothing happens
assert client.post(f"/admin/qtasks/task/{waiting[0].uuid}/cancel/").status_code == 403
assert app.get(waiting[0].uuid).status == "new"
page, done = confirm(f"/admin/qtasks/task/{waiting[0].uuid}/cancel/")
assert "Cancel task" in page.content.decode()
assert app.get(waiting[0].uuid).status == "cancel"
assert "Cancelled." in done.content.decode()

_, done = confirm(f"/admin/qtasks/task/{waiting[0].uuid}/retry/")
new_uuid = re.search(r"Retried as ([0-9a-f-]{36})", done.content.decode()).group(1)
assert app.get(new_uuid).status == "new" and app.get(new_uuid).args == (0, 1)

page, done = confirm("/admin/qtasks/queue/purge/?queue=default")
assert "Drop the 61 waiting task(s)" in page.content.decode()
assert "Purged 61 waiting tasks" in done.content.decode()
assert app.stats().queued == 0

# a dead letter, requeued from the admin (no worker runs here: it waits as a new task)
from qtasks.backends.base import Outcome
import asyncio
dead = app.add_task("add", 1, 2)
async def set_aside():
    got = await app.transport.exchange("w", ("default",), limit=1, lease=30.0, start=1)
    (delivery,) = got.deliveries
    await app.transport.exchange("w", ("default",), limit=0, lease=30.0, finished=[Outcome(
        delivery=delivery, uuid=delivery.uuid, status="error", task_name="add", priority=0,
        traceback="Boom", dead_letter="poison: Boom")])
asyncio.run(set_aside())
letters = client.get("/admin/qtasks/deadletter/").content.decode()
assert "poison: Boom" in letters and str(dead.uuid) in letters
page, done = confirm(f"/admin/qtasks/deadletter/requeue/?uuid={dead.uuid}")
assert "Requeued 1." in done.content.decode()
assert app.dead_letters() == []

queues = client.get("/admin/qtasks/queue/").content.decode()
assert 'id="qtasks-queues"' in queues and "default" in queues

# a staff user without qtasks permissions sees no qtasks section and cannot act
other = Client()
assert other.login(username="nobody", password="pw")
assert "/admin/qtasks/" not in other.get("/admin/").content.decode()
assert other.get("/admin/qtasks/task/").status_code == 403
assert other.get(f"/admin/qtasks/task/{dead.uuid}/retry/").status_code == 403
app.flush_all()
print("ok")
'''


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgres"])
def test_the_admin_section_shows_and_steers_the_queue(backend, tmp_path):
    url = {"sqlite": f"sqlite:///{tmp_path}/admin.sqlite3",
           "redis": f"{REDIS}{'&' if '?' in REDIS else '?'}prefix={_RUN}",
           "postgres": f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}schema=qtasks_{_RUN}",
           }[backend]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "proj.settings_admin",
           "PYTHONPATH": str(PROJECT), "ADMIN_BROKER_URL": url,
           "ADMIN_DB_PATH": str(tmp_path / "django.sqlite3")}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=120)
    try:
        assert done.returncode == 0, done.stderr[-4000:]
        assert done.stdout.strip().endswith("ok")
    finally:
        if backend == "postgres":
            import psycopg

            with psycopg.connect(POSTGRES, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "qtasks_{_RUN}" CASCADE')


ASGI = r"""
from starlette.testclient import TestClient
from proj.asgi_dashboard import application
from qtasks.contrib.django.apps import get_app

app = get_app()
app.flush_all()
task = app.add_task("add", 1, 2)
client = TestClient(application)
assert client.get("/ops/queue/").status_code == 401
page = client.get(f"/ops/queue/tasks/{task.uuid}", auth=("ops", "secret"))
assert page.status_code == 200 and str(task.uuid) in page.text, page.text[:500]
assert "/ops/queue/static/dashboard.css" in page.text
assert client.get("/admin/login/").status_code == 200  # Django still answers the rest
app.flush_all()
print("ok")
"""


def test_the_dashboard_mounts_beside_django_in_asgi_py(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "proj.settings_admin",
           "PYTHONPATH": str(PROJECT), "ADMIN_BROKER_URL": f"sqlite:///{tmp_path}/q.sqlite3",
           "ADMIN_DB_PATH": str(tmp_path / "django.sqlite3")}
    migrate = subprocess.run([sys.executable, "-m", "django", "migrate", "--noinput"],
                             cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stderr
    done = subprocess.run([sys.executable, "-c", ASGI], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().endswith("ok")
