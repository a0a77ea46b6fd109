"""Retry decisions and backoff, without a worker."""

import random

from qtasks.core.definition import build_definition
from qtasks.core.delays import start_at
from qtasks.core.retry import remaining_attempts, retry_delay, should_retry


def definition(**options):
    return build_definition(lambda: None, "t", 0, options)


def test_retry_on_exc_matches_subclasses():
    d = definition(retry=3, retry_on_exc=[LookupError])
    assert should_retry(d, 3, KeyError("x"))
    assert not should_retry(d, 3, ZeroDivisionError())
    assert not should_retry(d, 0, KeyError("x"))


def test_any_exception_without_a_filter_but_never_base_exceptions():
    d = definition(retry=1)
    assert should_retry(d, 1, ValueError())
    assert not should_retry(d, 1, SystemExit(1))


def test_remaining_attempts_prefers_the_message_count():
    d = definition(retry=5)
    assert remaining_attempts(d, None) == 5 and remaining_attempts(d, 2) == 2


def test_exponential_backoff_with_jitter_stays_in_its_band():
    d = definition(retry=5, retry_delay=1.0)
    rng = random.Random(7)
    for attempt in range(5):
        ceiling = 2.0**attempt
        for _ in range(50):
            assert ceiling / 2 <= retry_delay(d, attempt, rng) <= ceiling
    assert retry_delay(definition(retry=40, retry_delay=10.0), 30) <= 3600.0


def test_callable_delay_and_no_delay():
    assert retry_delay(definition(retry=2, retry_delay=lambda n: n * 3), 2) == 6
    assert retry_delay(definition(retry=2), 1) == 0.0


def test_start_at():
    import time
    from datetime import UTC, datetime, timedelta

    import pytest

    assert start_at(None, None) is None and start_at(0, None) is None
    assert abs(start_at(5, None) - (time.time() + 5)) < 1
    when = datetime.now(UTC) + timedelta(seconds=30)
    assert start_at(None, when) == when.timestamp()
    with pytest.raises(ValueError, match="aware"):
        start_at(None, datetime.now())
    with pytest.raises(ValueError):
        start_at(1, when)
    with pytest.raises(ValueError):
        start_at(-1, None)
