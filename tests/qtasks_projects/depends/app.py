from contextlib import contextmanager
from typing import Annotated

from qtasks import QueueTasks
from qtasks.plugins.depends import Depends, ScopeEnum

app = QueueTasks()
opened = []


@contextmanager
def connection():
    opened.append("open")
    try:
        yield f"conn-{len(opened)}"
    finally:
        print("closed", flush=True)


def settings():
    return {"rate": 3}


@app.task
def charge(amount: int, conn: Annotated[str, Depends(connection, scope=ScopeEnum.TASK)],
           config=Depends(settings, scope=ScopeEnum.WORKER)):
    return f"{conn} charged {amount * config['rate']}"


if __name__ == "__main__":
    app.run_forever()
