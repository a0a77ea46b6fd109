"""The overview charts' per-minute totals, from successive readings of the workers."""

from qtasks.backends.base import WorkerRow
from qtasks.dashboard.history import History

T0 = 1_800_000_000.0  # a minute boundary


def _w(wid, finished, failed, busy, started=T0 - 500):
    return WorkerRow(id=wid, hostname="h", pid=1, started_at=started, heartbeat_at=T0,
                     concurrency=4, finished=finished, failed=failed, busy_seconds=busy)


def test_what_workers_did_between_readings_lands_in_its_minute():
    history = History(minutes=3, started=T0 - 10)
    history.observe([_w("a", 100, 5, 10.0)], now=T0 + 1)  # running before we watched: baseline
    history.observe([_w("a", 130, 6, 13.0)], now=T0 + 30)
    history.observe([_w("a", 150, 6, 15.0), _w("b", 7, 7, 0.7, started=T0 + 40)], now=T0 + 65)
    series = history.series(now=T0 + 70)
    assert [m["t"] for m in series] == [T0 - 60, T0, T0 + 60]
    assert [(m["finished"], m["failed"]) for m in series] == [(0, 0), (30, 1), (27, 7)]
    assert series[1]["mean_seconds"] == 0.1
    assert round(series[2]["mean_seconds"], 6) == round(2.7 / 27, 6)


def test_a_restarted_worker_counts_from_zero_and_old_minutes_fall_off():
    history = History(minutes=2, started=T0 - 10)
    history.observe([_w("a", 0, 0, 0.0, started=T0)], now=T0 + 1)
    history.observe([_w("a", 50, 0, 5.0, started=T0)], now=T0 + 20)
    history.observe([_w("a", 4, 1, 0.4, started=T0)], now=T0 + 200)  # counters went back
    series = history.series(now=T0 + 200)
    assert [m["t"] for m in series] == [T0 + 120, T0 + 180]
    assert [m["finished"] for m in series] == [0, 4]
