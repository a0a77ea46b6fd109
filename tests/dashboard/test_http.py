"""The dashboard's HTTP side in process (Starlette's test client), on the backend under test:
authentication, CSRF, read-only mode, paging, mounting, and secrets kept out of pages."""

from __future__ import annotations

import base64
import re

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from apps import sync_app
from qtasks import QueueTasks
from qtasks.dashboard import create_app

APP = sync_app.app
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture
def app():
    APP.flush_all()
    return APP


def _basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _csrf(client: TestClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_basic_auth_lets_the_right_password_in_and_no_other(app):
    client = TestClient(create_app(app, auth="admin:secret"))
    assert client.get("/").status_code == 401
    refused = client.get("/", headers=_basic("admin", "wrong"))
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    assert client.get("/", headers=_basic("admin", "secretX")).status_code == 401
    assert client.get("/", headers={"authorization": "Basic !!!"}).status_code == 401
    assert client.get("/", headers=_basic("admin", "secret")).status_code == 200
    assert client.get("/events", headers=_basic("other", "secret")).status_code == 401


def test_a_token_works_as_bearer_or_once_in_the_address(app):
    client = TestClient(create_app(app, token="t0k3n"), follow_redirects=False)
    assert client.get("/tasks").status_code == 401
    assert client.get("/tasks", headers={"authorization": "Bearer t0k3n"}).status_code == 200
    assert client.get("/tasks", headers={"authorization": "Bearer nope"}).status_code == 401
    first = client.get("/tasks?token=t0k3n&status=new")
    assert first.status_code == 303 and first.headers["location"] == "/tasks?status=new"
    assert "HttpOnly" in first.headers["set-cookie"]
    assert client.get("/tasks?status=new").status_code == 200  # the cookie now carries it
    assert TestClient(create_app(app, token="t0k3n")).get("/tasks?token=bad").status_code == 401


def test_actions_need_the_pages_csrf_token(app):
    task = app.add_task("add", 1, 2)
    client = TestClient(create_app(app), follow_redirects=False)
    assert client.post(f"/tasks/{task.uuid}/cancel").status_code == 403
    assert client.post(f"/tasks/{task.uuid}/cancel", data={"csrf": "forged"}).status_code == 403
    other = TestClient(create_app(app))  # another browser: its own cookie, not this one's
    stolen = _csrf(other, f"/confirm/cancel?uuid={task.uuid}")
    assert client.post(f"/tasks/{task.uuid}/cancel", data={"csrf": stolen}).status_code == 403
    assert app.get(task.uuid).status == "new"
    token = _csrf(client, f"/confirm/cancel?uuid={task.uuid}")
    done = client.post(f"/tasks/{task.uuid}/cancel", data={"csrf": token})
    assert done.status_code == 303 and "cancelled" in done.headers["location"]
    assert app.get(task.uuid).status == "cancel"


def test_read_only_shows_no_action_and_refuses_them(app):
    task = app.add_task("add", 1, 2)
    client = TestClient(create_app(app, read_only=True))
    page = client.get(f"/tasks/{task.uuid}")
    assert page.status_code == 200 and "read-only" in page.text
    assert "/confirm/" not in page.text and "/confirm/" not in client.get("/").text
    assert client.get(f"/confirm/cancel?uuid={task.uuid}").status_code == 403
    writable = TestClient(create_app(app))
    token = _csrf(writable, f"/confirm/cancel?uuid={task.uuid}")
    client.cookies.update(writable.cookies)
    assert client.post(f"/tasks/{task.uuid}/cancel", data={"csrf": token}).status_code == 403
    assert app.get(task.uuid).status == "new"


def test_the_task_list_pages_through_every_task_once(app):
    tasks = app.add_tasks([("add", (i, 0)) for i in range(120)])  # bulk: created_at may tie
    client = TestClient(create_app(app))
    seen: list[str] = []
    url = "/tasks?task_name=add&limit=50"
    while url:
        page = client.get(url)
        assert page.status_code == 200
        body = page.text.split('id="results"')[1].split("</table>")[0]
        seen += re.findall(rf'href="[^"]*/tasks/({UUID})"', body)
        older = re.search(r'id="older" href="([^"]+)"', page.text)
        url = older.group(1).replace("&amp;", "&") if older else None
    assert len(seen) == 120 and set(seen) == {str(t.uuid) for t in tasks}
    assert client.get("/tasks?cursor=garbage").status_code == 400
    assert client.get("/tasks?status=nonsense").status_code == 400
    assert client.get("/tasks?until=not-a-time").status_code == 400


def test_it_works_mounted_under_a_prefix(app):
    task = app.add_task("add", 1, 2)
    outer = Starlette(routes=[Mount("/ops/queue", app=create_app(app))])
    client = TestClient(outer)
    page = client.get("/ops/queue/")
    assert page.status_code == 200
    assert f"/ops/queue/tasks/{task.uuid}" in page.text
    assert "/ops/queue/static/dashboard.js" in page.text
    assert client.get("/ops/queue/static/dashboard.css").status_code == 200
    assert client.get(f"/ops/queue/tasks/{task.uuid}").status_code == 200


def test_the_overview_stream_sends_snapshots(app):
    task = app.add_task("add", 1, 2)
    client = TestClient(create_app(app, interval=0.05))
    with client.stream("GET", "/events") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = []
        for line in events.iter_lines():
            lines.append(line)
            if line.startswith("data: "):
                break
    assert "event: snapshot" in lines
    assert str(task.uuid) in lines[-1] and '"queued":1' in lines[-1].replace(" ", "")


def test_a_password_in_the_backend_url_never_shows(tmp_path):
    secret_app = QueueTasks(name="pw", broker_url="redis://:hunter2@127.0.0.1:1/0")
    client = TestClient(create_app(secret_app), raise_server_exceptions=False)
    page = client.get("/tasks/00000000-0000-0000-0000-000000000000")
    assert "hunter2" not in page.text
    assert "hunter2" not in client.get("/").text


def test_unknown_tasks_and_actions_are_plain_errors(app):
    client = TestClient(create_app(app))
    missing = client.get("/tasks/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and "No task" in missing.text
    assert client.get("/tasks/not-a-uuid").status_code == 404
    assert client.get("/confirm/explode?uuid=00000000-0000-0000-0000-000000000000") \
        .status_code == 404
    assert client.get("/confirm/retry").status_code == 400
