"""An app created first, shared tasks imported afterwards."""

import os

from qtasks import QueueTasks

app = QueueTasks(name="tshared", broker_url=f"sqlite:///{os.environ['QTASKS_TEST_DIR']}/tshared.sqlite3")

from apps import shared_mod  # noqa: E402,F401  (imported after the app on purpose)
