"""A decorated task keeps its function's signature for type checkers (mypy, on a sample file)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

SAMPLE = Path(__file__).resolve().parents[1] / "typing" / "decorated.py"


def test_decorated_tasks_keep_their_signatures(tmp_path):
    out, err, status = api.run([str(SAMPLE), "--no-error-summary", "--show-absolute-path",
                                "--hide-error-context", "--cache-dir", str(tmp_path / "cache"),
                                "--no-pretty", "--show-column-numbers"])
    assert status in (0, 1), err
    got: dict[int, list[str]] = {}
    for line in out.splitlines():
        found = re.match(r".*decorated\.py:(\d+):\d+: (error|note): (.*)", line)
        if found:
            got.setdefault(int(found[1]), []).append(f"{found[2]}: {found[3]}")
    expected = {}
    for number, text in enumerate(SAMPLE.read_text().splitlines(), start=1):
        mark = re.search(r"# ([EN]): (.*)$", text)
        if mark:
            expected[number] = ("error" if mark[1] == "E" else "note", mark[2])
    for number, (kind, fragment) in expected.items():
        messages = got.pop(number, [])
        assert any(m.startswith(kind) and fragment in m for m in messages), \
            f"line {number}: wanted {kind} with {fragment!r}, mypy said {messages}"
    assert not got, f"unexpected mypy messages: {got}"
