from django.conf import settings

from qtasks import QueueTasks

app = QueueTasks(name="mysite", broker_url=f"sqlite:///{settings.DATA_DIR / 'qtasks.sqlite3'}")
