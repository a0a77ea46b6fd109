"""Tasks of the test apps write lines here so tests can see what ran, and how often."""

import os
from pathlib import Path

MARKS = Path(os.environ["QTASKS_TEST_DIR"]) / "marks"


def mark(line: str) -> None:
    MARKS.mkdir(exist_ok=True)
    with open(MARKS / f"{os.getpid()}.log", "a") as fh:
        fh.write(line + "\n")
