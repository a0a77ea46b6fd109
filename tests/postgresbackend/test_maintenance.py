"""Workers keep the qtasks tables' planner statistics current where nothing else does (this
machine's PostgreSQL runs with autovacuum off, as some deployments do): with ``records``
counted at a handful of rows while it held thousands, every claim read all the records of
its app to mark one task started."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from helpers import wait_until
from postgresbackend.conftest import POSTGRES

pytestmark = pytest.mark.slow


def _analyzed(schema: str) -> dict[str, bool]:
    """What a DBA sees in ``pg_stat_user_tables``: which qtasks tables were analyzed."""
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        rows = conn.execute("SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables "
                            "WHERE schemaname = %s", (schema,)).fetchall()
    return dict(rows)


def test_a_worker_analyzes_the_tables_it_has_filled(pg_url, apps, side):
    schema = parse_qs(urlsplit(pg_url).query)["schema"][0]
    spec, app, runs = apps.app(pg_url, lease=3.0)  # maintenance at each heartbeat: every 1 s
    assert not _analyzed(schema).get("records"), "the new tables were analyzed already"
    app.add_tasks([("mark", (i,)) for i in range(1500)])
    apps.worker(spec)
    wait_until(lambda: _analyzed(schema).get("records"), timeout=30,
               what="the worker to ANALYZE the records table")
    wait_until(lambda: side.hlen(runs) == 1500, timeout=60, what="the 1,500 tasks to run")
