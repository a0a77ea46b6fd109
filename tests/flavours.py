"""One client interface over the sync and the async app, so a test runs against both."""

from __future__ import annotations

import asyncio
from typing import Any

from apps import async_app, sync_app
from qtasks.app import AsyncQueueTasks


class Client:
    def __init__(self, module: Any) -> None:
        self.module = module
        self.app = module.app
        self.spec = f"{module.__name__}:app"
        self.is_async = isinstance(self.app, AsyncQueueTasks)

    def _do(self, result: Any) -> Any:
        return asyncio.run(result) if self.is_async else result

    def add(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        async def go() -> Any:
            return await self.app.add_task(name, *args, **kwargs)

        return asyncio.run(go()) if self.is_async else self.app.add_task(name, *args, **kwargs)

    def get(self, uuid: Any) -> Any:
        return self._do(self.app.get(uuid))

    def wait(self, uuid: Any, timeout: float = 20) -> Any:
        return self.app.wait_sync(uuid, timeout)

    def flush(self) -> None:
        self._do(self.app.flush_all())

    def cancel(self, uuid: Any, reason: str = "") -> bool:
        return self._do(self.app.cancel(uuid, reason))


FLAVOURS = {"sync": sync_app, "async": async_app}
