"""The dashboard end to end: a real worker, the dashboard's own server process, headless
Chromium. What is checked is what a user sees and does on the pages."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from apps import sync_app
from backend_urls import in_process_only
from dashboard.conftest import PASSWORD, USER, docs_screenshot
from helpers import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(in_process_only(), reason="the dashboard runs in its own process"),
]
APP = "apps.sync_app:app"


@pytest.fixture
def served(start_worker, dashboard):
    sync_app.app.flush_all()
    start_worker(APP)
    return dashboard(APP, "--auth", f"{USER}:{PASSWORD}")


def test_the_overview_shows_a_task_arrive_live(served, page):
    page.goto(served.url + "/")
    page.wait_for_selector("#live.on")  # the event stream is open
    task = sync_app.app.add_task("add", 2, 3)
    row = page.locator("#recent tbody tr", has_text=str(task.uuid))
    row.wait_for(timeout=15000)  # no reload: the page updated itself
    wait_until(lambda: "success" in row.inner_text(), what="the task's success on the page")
    page.locator("#workers tbody tr", has_text="default").first.wait_for()
    assert page.locator('[data-total="workers"]').inner_text() == "1"
    assert page.errors == []
    docs_screenshot(page, "dashboard-overview.png")


def test_search_finds_tasks_by_name_and_pages_through_them(served, page):
    tasks = [sync_app.app.add_task("add", i, 0) for i in range(25)]
    sync_app.app.add_task("test", 1)
    wait_until(lambda: sync_app.app.get(tasks[-1].uuid).status == "success")
    page.goto(served.url + "/tasks")
    page.fill("input[name=task_name]", "add")
    page.select_option("select[name=status]", "success")
    page.click("button[type=submit]")
    shown = page.locator("#results tbody tr")
    assert shown.count() == 20
    assert set(re.findall(r"[0-9a-f-]{36}", page.locator("#results").inner_text())) <= \
        {str(t.uuid) for t in tasks}
    first_page = set(re.findall(r"[0-9a-f-]{36}", page.locator("#results").inner_text()))
    page.click("#older")
    second_page = set(re.findall(r"[0-9a-f-]{36}", page.locator("#results").inner_text()))
    assert len(second_page) == 5 and not first_page & second_page
    assert first_page | second_page == {str(t.uuid) for t in tasks}
    assert page.locator("#older").count() == 0
    # a uuid in the search box opens that task
    page.goto(served.url + "/tasks")
    page.fill("input[name=uuid]", str(tasks[3].uuid))
    page.click("button[type=submit]")
    assert page.url.endswith(f"/tasks/{tasks[3].uuid}")


def test_a_failed_task_is_retried_from_its_page(served, page, tmp_path):
    marker = tmp_path / "ran-once"
    failed = sync_app.app.add_task("fails_once", str(marker))
    wait_until(lambda: sync_app.app.get(failed.uuid).status == "error")
    page.goto(f"{served.url}/tasks/{failed.uuid}")
    assert "first run fails" in page.locator("#traceback").inner_text()
    page.click("#retry")
    assert "Run task" in page.locator("#question").inner_text()  # it asks first
    page.click("#confirm")
    flash = page.locator(".flash").inner_text()
    new_uuid = re.search(r"retried as ([0-9a-f-]{36})", flash).group(1)
    assert page.url.split("?")[0].endswith(f"/tasks/{new_uuid}")
    wait_until(lambda: sync_app.app.get(new_uuid).status == "success")
    page.reload()
    assert page.locator("#task-status").inner_text() == "success"
    fields = page.locator("dl.fields").inner_text()  # who ran it, when, for how long
    assert "worker" in fields and "deliveries" in fields and "Started" in fields
    assert page.locator("#ran").inner_text().endswith(" s")
    assert str(failed.uuid) in page.locator(".chain").inner_text()  # the retry chain
    assert sync_app.app.get(failed.uuid).status == "error"  # the old record keeps its end


def test_a_dead_letter_is_requeued(served, page):
    dead = sync_app.app.add_task("unencodable")  # its result cannot be stored: dead letter
    wait_until(lambda: [d.uuid for d in sync_app.app.dead_letters()] == [str(dead.uuid)])
    page.goto(served.url + "/dead-letters")
    row = page.locator("#letters tbody tr", has_text=str(dead.uuid))
    assert "not JSON-serialisable" in row.inner_text()  # the reason
    row.locator("input[type=checkbox]").check()
    page.click("text=Requeue selected")
    assert "1 dead-lettered task" in page.locator("#question").inner_text()
    page.click("#confirm")
    assert "requeued 1" in page.locator(".flash").inner_text()
    # it failed the same way again, so it is back under its new uuid, and the old one is gone
    wait_until(lambda: len(sync_app.app.dead_letters()) == 1
               and sync_app.app.dead_letters()[0].uuid != str(dead.uuid))
    page.reload()
    assert str(dead.uuid) not in page.locator("#letters").inner_text()


def test_a_wrong_password_is_refused(served, chromium):
    context = chromium.new_context(http_credentials={"username": USER, "password": "wrong"})
    try:
        response = context.new_page().goto(served.url + "/")
        assert response.status == 401
    finally:
        context.close()


def test_a_script_in_an_argument_is_shown_as_text_and_never_runs(served, page):
    hostile = "<script>window.__pwned = 1</script><img src=x onerror=window.__pwned=2>"
    task = sync_app.app.add_task("test", hostile)
    page.goto(f"{served.url}/tasks/{task.uuid}")
    assert hostile in page.locator("#args").inner_text()
    page.goto(served.url + "/")  # the live overview builds rows from the same data
    page.locator("#recent tbody tr", has_text=str(task.uuid)).wait_for()
    assert page.evaluate("window.__pwned") is None
    assert page.errors == []


def test_cancel_and_purge_ask_first_and_then_act(served, page, tmp_path):
    page.goto(served.url + "/")
    waiting = [sync_app.app.add_task("mail", f"user{i}@example.com") for i in range(3)]
    page.goto(f"{served.url}/tasks/{waiting[0].uuid}")
    page.click("#cancel")
    page.click("#back")  # changed their mind: nothing happens
    assert sync_app.app.get(waiting[0].uuid).status == "new"
    page.goto(f"{served.url}/tasks/{waiting[0].uuid}")
    page.click("#cancel")
    page.click("#confirm")
    assert page.locator("#task-status").inner_text() == "cancel"
    page.goto(served.url + "/confirm/purge?queue=emails")
    assert "2 waiting task(s)" in page.locator("#question").inner_text()
    page.click("#confirm")
    assert "purged 2 waiting tasks from 'emails'" in page.locator(".flash").inner_text()
    assert {sync_app.app.get(t.uuid).status for t in waiting} == {"cancel"}


def test_screenshots_are_written(served, page):
    page.goto(served.url + "/")
    folder = Path(os.environ.get("QTASKS_ARTEFACTS") or
                  Path(os.environ["QTASKS_TEST_DIR"]) / "screenshots")
    page.screenshot(path=str(folder / "overview-explicit.png"))
    assert (folder / "overview-explicit.png").stat().st_size > 1000
