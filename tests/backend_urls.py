"""Which backend the test apps use: one environment variable chooses it for the whole suite.

``QTASKS_TEST_BROKER_URL`` (default: one SQLite file per app in the test directory) and
``QTASKS_TEST_STORAGE_URL`` (default: none, the broker keeps the records) are templates:
``{name}`` becomes the app's name and ``{dir}`` the suite's scratch directory. Examples::

    QTASKS_TEST_BROKER_URL='memory://{name}'
    QTASKS_TEST_BROKER_URL='memory://{name}' QTASKS_TEST_STORAGE_URL='sqlite:///{dir}/{name}.db'
"""

import os

DEFAULT_BROKER = "sqlite:///{dir}/{name}.sqlite3"


def urls(name: str) -> dict[str, str | None]:
    """``broker_url`` and ``storage_url`` for the test app ``name``."""
    folder = os.environ["QTASKS_TEST_DIR"]
    broker = os.environ.get("QTASKS_TEST_BROKER_URL") or DEFAULT_BROKER
    storage = os.environ.get("QTASKS_TEST_STORAGE_URL") or None
    return {"broker_url": broker.format(name=name, dir=folder),
            "storage_url": storage.format(name=name, dir=folder) if storage else None}


def in_process_only() -> bool:
    """The chosen backend lives in one process (``memory://``): workers must be threads."""
    broker = os.environ.get("QTASKS_TEST_BROKER_URL") or DEFAULT_BROKER
    return broker.startswith("memory://")
