"""The pure waiting logic, driven without a backend."""

from qtasks.core.waiting import run_sync, wait_for_final


def test_returns_the_final_row_after_pausing_on_unfinished_ones():
    rows = iter([{"status": "new"}, {"status": "process"}, {"status": "success", "x": 1}])
    pauses = []
    result = run_sync(wait_for_final("u", 5), lambda uuid: next(rows), pauses.append)
    assert result == {"status": "success", "x": 1}
    assert len(pauses) == 2 and all(0 < p <= 1.0 for p in pauses)


def test_unknown_task_returns_none_at_once():
    pauses = []
    assert run_sync(wait_for_final("u", 5), lambda uuid: None, pauses.append) is None
    assert pauses == []


def test_timeout_returns_none():
    import time

    result = run_sync(wait_for_final("u", 0.05), lambda uuid: {"status": "new"}, time.sleep)
    assert result is None


def test_custom_final_statuses():
    result = run_sync(wait_for_final("u", 5, frozenset({"process"})),
                      lambda uuid: {"status": "process"}, lambda s: None)
    assert result == {"status": "process"}
