"""The project's two qtasks apps: one for ordinary tasks, one for reports."""

import os

from qtasks import QueueTasks

_dir = os.environ["QTASKS_TEST_DIR"]
app = QueueTasks(name="proj", broker_url=f"sqlite:///{_dir}/proj.sqlite3")
reports = QueueTasks(name="proj_reports", broker_url=f"sqlite:///{_dir}/proj.sqlite3")
