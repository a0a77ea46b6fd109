"""Start a worker, enqueue a few tasks, print their results, stop the worker.

    python examples/demo.py

Everything runs on the embedded SQLite database ``examples/.qtasks/demo.sqlite3``.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.chdir(HERE)  # the worker and this producer must share the working directory (and database)
sys.path.insert(0, str(HERE))

from demo_tasks import add, app, greet  # noqa: E402


def main() -> int:
    app.flush_all()
    log_path = HERE / ".qtasks" / "demo-worker.log"
    log = open(log_path, "wb")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "qtasks", "-A", "demo_tasks:app", "run",
                               "--concurrency", "4"], stdout=log, stderr=subprocess.STDOUT)
    try:
        started = time.perf_counter()
        print("by name:   ", app.add_task("greet", "world", timeout=30).returning)
        print("by handle: ", greet.add_task("qtasks", timeout=10).returning)
        queued = [add.add_task(i, i) for i in range(5)]
        print("five adds: ", [app.wait_sync(t.uuid, 10).returning for t in queued])
        failed = app.add_task("fail", timeout=10)
        print("a failure: ", failed.status, "-", failed.traceback.strip().splitlines()[-1])
        print(f"done in {time.perf_counter() - started:.2f}s; database: {app.backend.path}")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        log.close()
    print(f"worker log: {log_path}")
    return 0 if worker.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
