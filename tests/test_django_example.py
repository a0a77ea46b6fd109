"""examples/django, run the way its README says: migrate, a worker, a request, the result."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django")

EXAMPLE = Path(__file__).parent.parent / "examples" / "django"

CLIENT = """
import json, time, django
django.setup()
from django.test import Client
client = Client()
created = client.post("/orders/", json.dumps({"item": "cake", "quantity": 2}),
                      content_type="application/json")
assert created.status_code == 202, created.content
order = created.json()["order"]
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    status = client.get(f"/orders/{order}/").json()
    if status["status"] == "processed":
        break
    time.sleep(0.05)
print(json.dumps(status))
"""


def test_the_example_processes_an_order(tmp_path):
    env = {**os.environ, "EXAMPLE_DATA_DIR": str(tmp_path), "PYTHONPATH": str(EXAMPLE),
           "DJANGO_SETTINGS_MODULE": "mysite.settings"}

    def manage(*args):
        return subprocess.run([sys.executable, "manage.py", *args], cwd=EXAMPLE, env=env,
                              capture_output=True, text=True, timeout=120)

    migrated = manage("migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    inspect = manage("qtasks", "inspect")
    assert "task process_order (orders.tasks.process_order" in inspect.stdout, inspect.stderr
    worker = subprocess.Popen([sys.executable, "manage.py", "qtasks", "worker", "--noreload"],
                              cwd=EXAMPLE, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        result = subprocess.run([sys.executable, "-c", CLIENT], cwd=EXAMPLE, env=env,
                                capture_output=True, text=True, timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '{"order": 1, "status": "processed", "total_cents": 840}', (
        result.stdout + out.decode())
    assert worker.returncode == 0
