"""The README's first command runs the demo; it must keep working."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_readme_opens_with_install_and_test_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash)\n(.*?)```", text, re.S)
    assert "pip install -e ." in blocks[0] and "examples/demo.py" in blocks[0]
    assert "pip install -e '.[test]'" in blocks[1] and "pytest" in blocks[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert blocks[1].strip().splitlines()[-1] in ci
    backends = [b for b in blocks if "QTASKS_TEST_BROKER_URL=" in b]  # the other backends' runs
    assert backends, "README.md names the test runs on the other backends"
    assert all(line in ci for line in backends[0].strip().splitlines())


def test_demo_prints_results():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "by name:    Hello, world!" in result.stdout
    assert "five adds:  [0, 2, 4, 6, 8]" in result.stdout
    assert "a failure:  error - ValueError: this task fails on purpose" in result.stdout
