"""Every Python example in docs/features runs, so the docs cannot rot."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs" / "features"
EXAMPLES = [(page, block) for page in sorted(DOCS.glob("*.md"))
            for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)]


def test_every_feature_page_has_an_example():
    pages = {page for page, _ in EXAMPLES}
    assert pages == set(DOCS.glob("*.md")) and len(pages) >= 8


@pytest.mark.parametrize(("page", "code"), EXAMPLES, ids=lambda v: getattr(v, "stem", ""))
def test_example_runs(page, code, tmp_path):
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, f"{page.name}:\n{result.stdout}\n{result.stderr}"
