"""An app created first, shared tasks imported afterwards."""


from backend_urls import urls
from qtasks import QueueTasks

app = QueueTasks(name="tshared", **urls("tshared"))

from apps import shared_mod  # noqa: E402,F401  (imported after the app on purpose)
