"""Retries, delays, max_time, generators, decode and cancel, in both flavours."""

import itertools
import time

import pytest

from flavours import FLAVOURS, Client
from helpers import clear_marks, marks


@pytest.fixture(params=["sync", "async"])
def client(request, start_worker):
    c = Client(FLAVOURS[request.param])
    c.flush()
    clear_marks()
    start_worker(c.spec, "--concurrency", "4")
    return c


def test_retry_gives_one_plus_n_attempts_linked_as_records(client):
    first = client.add("flaky", "r1")
    last = client.wait(first.uuid)
    assert marks().count("flaky r1") == 3
    assert (last.status, last.retry) == ("error", 0)
    assert "KeyError" in last.traceback
    assert last.args == ("r1",)  # arguments kept along the chain
    original = client.get(first.uuid)
    assert (original.status, original.retry) == ("retry", 2)
    middle = client.get(original.retry_child_uuid)
    assert (middle.status, middle.retry) == ("retry", 1)
    assert middle.retry_parent_uuid == original.uuid
    assert middle.retry_child_uuid == last.uuid and last.retry_parent_uuid == middle.uuid


def test_waiting_with_timeout_follows_the_chain_to_the_last_attempt(client):
    record = client.add("lucky", "w1", timeout=20)
    assert (record.status, record.returning) == ("success", {"tag": "w1"})
    assert record.retry_parent_uuid is not None
    assert marks().count("lucky w1") == 2


def test_retry_on_exc_matches_subclasses_and_nothing_else(client):
    retried = client.add("picky", "key", "p1", timeout=20)
    assert retried.status == "error" and marks().count("picky p1") == 6
    once = client.add("picky", "zero", "p2", timeout=20)
    assert once.status == "error" and "ZeroDivisionError" in once.traceback
    assert marks().count("picky p2") == 1


def test_retry_delay_waits_between_attempts(client):
    client.add("backoff", "b1", timeout=20)
    times = [float(line.split()[2]) for line in marks() if line.startswith("backoff b1")]
    assert len(times) == 3
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # base 0.3 s: the first wait is 0.15-0.3 s, the second 0.3-0.6 s (jitter), plus overhead
    assert gaps[0] >= 0.15 and gaps[1] >= 0.3


def test_delayed_task_waits_for_its_time(client):
    start = time.time()
    task = client.add("stamp", delay=0.8)
    assert task.status == "new"
    ran_at = client.wait(task.uuid).returning
    assert ran_at >= start + 0.8


def test_eta_in_the_past_runs_at_once(client):
    from datetime import UTC, datetime, timedelta

    record = client.add("stamp", eta=datetime.now(UTC) - timedelta(hours=1), timeout=10)
    assert record.status == "success"


def test_max_time_records_a_timeout_error(client):
    started = time.monotonic()
    record = client.add("too_slow", timeout=20)
    assert time.monotonic() - started < 2.5  # recorded at the deadline, not after 3 s
    assert record.status == "error"
    assert "Time limit exceeded for task too_slow: 0.5 seconds" in record.traceback


def test_generator_results_are_the_handled_values(client):
    record = client.add("doubles", 5, timeout=10)
    expected = [8, 9, 10, 11, 12] if client.is_async else [2, 4, 6, 8, 10]
    assert (record.status, record.returning) == ("success", expected)
    mixed = client.add("gen_async_handler", 3, timeout=10)
    assert mixed.returning == [100, 101, 102]


def test_decode_output_is_the_stored_result_and_bad_output_a_clear_error(client):
    assert client.add("decoded", 7, timeout=10).returning == {"wrapped": 7}
    bad = client.add("bad_decode", timeout=10)
    assert bad.status == "error" and "not JSON" in bad.traceback
    assert client.get(bad.uuid).status == "error"  # and later reads still work


def test_task_cancel_error_gives_cancel_with_reason_and_args(client):
    record = client.add("cancel_me", "Test task cancelled", timeout=10)
    assert record.status == "cancel"
    assert record.cancel_reason == "Test task cancelled"
    assert record.args == ("Test task cancelled",)


def test_cancel_from_outside_before_start_means_it_never_runs(client):
    task = client.add("stamp", delay=30)
    assert client.cancel(task.uuid, "not needed") is True
    record = client.get(task.uuid)
    assert (record.status, record.cancel_reason) == ("cancel", "not needed")
    assert client.cancel(task.uuid) is False  # already final
    assert client.wait(task.uuid, 1).status == "cancel"
