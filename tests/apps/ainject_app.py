"""Depends, State and pydantic arguments on the async app."""

import asyncio
import uuid
from typing import Annotated

from pydantic import BaseModel

from apps.marks import mark
from backend_urls import urls
from qtasks.asyncio import QueueTasks
from qtasks.plugins import AsyncState, Depends

app = QueueTasks(name="tainject",
                 **urls("tainject"))


async def number():
    mark("dep open")
    yield 123
    mark("dep closed")


async def resource():
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


class Conversation(AsyncState):
    pass


@app.task
async def uses_number(x, n: Annotated[int, Depends(number)]):
    mark("task ran")
    return x + n


@app.task
async def holds_resource(pause, res=Depends(resource)):
    await asyncio.sleep(pause)
    return res["closed"]


@app.task
async def uses_shared(client=Depends(shared_client, scope="worker")):
    return client


@app.task
async def step1(state: Conversation):
    await state.set("state", "await_phone")
    return await state.update(step=1, prompt="Send your phone")


@app.task
async def step2(state: Conversation):
    everything = await state.get_all()
    await state.clear()
    return [everything, await state.get_all()]


@app.task
async def hello(item: Item):
    return f"Hello, {item.name}!"


@app.task
async def item_back(name, value) -> Item:
    return Item(name=name, value=value)
