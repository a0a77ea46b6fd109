"""Depends, State and pydantic arguments on the sync app."""

import time
import uuid
from typing import Annotated

from pydantic import BaseModel

from apps.marks import mark
from backend_urls import urls
from qtasks import Depends, QueueTasks
from qtasks.plugins.depends import ScopeEnum
from qtasks.plugins.states import SyncState

app = QueueTasks(name="tinject", **urls("tinject"))


async def number():
    mark("dep open")
    yield 123
    mark("dep closed")


def resource():
    handle = {"id": uuid.uuid4().hex, "closed": False}
    yield handle
    handle["closed"] = True


def shared_client():
    mark("shared made")
    yield "client"
    mark("shared closed")


class Item(BaseModel):
    name: str
    value: int


class Conversation(SyncState):
    pass


@app.task
def uses_number(x, n: Annotated[int, Depends(number)]):
    mark("task ran")
    return x + n


@app.task
def holds_resource(pause, res=Depends(resource)):
    time.sleep(pause)
    return res["closed"]


@app.task
def uses_shared(client=Depends(shared_client, scope=ScopeEnum.WORKER)):
    return client


@app.task
def step1(state: Conversation):
    state.set("state", "await_phone")
    return state.update(step=1, prompt="Send your phone")


@app.task
def step2(state: Conversation):
    everything = state.get_all()
    state.clear()
    return [everything, state.get_all()]


@app.task
def hello(item: Item):
    return f"Hello, {item.name}!"


@app.task
def item_back(name, value) -> Item:
    return Item(name=name, value=value)
