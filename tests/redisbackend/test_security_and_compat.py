"""Secrets stay out of sight, TLS works with a CA file, and QTasks 1.7 code and data still fit."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from conftest import TESTS
from qtasks import QueueTasks
from qtasks.asyncio import QueueTasks as AsyncQueueTasks
from qtasks.brokers import AsyncRedisBroker, SyncRedisBroker
from qtasks.exceptions import BackendError, NotYetSupported
from qtasks.storages import AsyncRedisStorage, SyncRedisStorage
from redis_servers import RedisServer, tls_server

SECRET = "s3cr3t-Pa55"


@pytest.fixture
def locked_redis(tmp_path):
    server = RedisServer(tmp_path / "locked", password=SECRET)
    yield server
    server.stop()


def _field_reprs(thing):
    return [repr(value) for value in vars(thing).values() if not isinstance(value, str)]


def test_the_password_never_shows(locked_redis, apps, tmp_path, monkeypatch):
    spec, app = apps.app(locked_redis.url)
    worker = apps.worker(spec)
    assert app.add_task("mark", 1, timeout=10).returning == 1
    info = subprocess.run([sys.executable, "-m", "qtasks", "-A", spec, "info"],
                          env={**os.environ, "PYTHONPATH": f"{apps.folder}:{TESTS}"},
                          capture_output=True, text=True, timeout=60)
    wrong = QueueTasks(name="x", broker_url=locked_redis.url.replace(SECRET, "wrong-one"))
    with pytest.raises(BackendError) as refused:
        wrong.add_task("mark", 1)
    # what a debugger, pytest's --showlocals or an error tracker prints of objects that are
    # some frame's locals: their reprs (the backend itself must hold the URL, to connect)
    monkeypatch.setenv("QTASKS_BROKER_URL", locked_redis.url)
    from_env = QueueTasks(name="env")
    assert from_env.get(from_env.add_task("mark", 2).uuid).status == "new"  # connected
    shown = [app.backend.describe(), repr(app.backend), repr(app), info.stdout, info.stderr,
             worker.output, str(refused.value), repr(refused.value), repr(app.config),
             repr(from_env.config), *_field_reprs(app.backend), *_field_reprs(from_env.backend)]
    assert info.returncode == 0, info.stderr
    assert "redis" in info.stdout and "***" in info.stdout
    for text in shown:
        assert SECRET not in text and "wrong-one" not in text, text


@pytest.mark.parametrize("url", [
    "redis://:zq/xv-word@127.0.0.1:1/0",
    "redis://:zq/xv?word@127.0.0.1:1/0",
    "redis+sentinel://:zq/xv-word@127.0.0.1:1,127.0.0.1:2/mymaster",
    "redis+cluster://:zq/xv-word@127.0.0.1:1",
])
def test_a_password_the_url_cannot_carry_is_not_shown_either(url):
    # a '/' in the password ends the host part for every URL parser; urllib's own error
    # quotes what it took for the port
    app = QueueTasks(name="x", broker_url=url)
    with pytest.raises(BackendError, match="percent-encoded") as refused:
        app.add_task("mark", 1)
    for text in (str(refused.value), repr(refused.value), repr(app.config)):
        assert "zq" not in text and "xv" not in text, text


def test_rediss_with_a_ca_file(tmp_path, apps):
    with tls_server(tmp_path / "tls") as (server, ca):
        url = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={ca}"
        # the task's own side effects go to a plain server: the test is about the queue's link
        plain = RedisServer(tmp_path / "plain")
        try:
            spec, app = apps.app(url, name="tls", side=plain.url)
            apps.worker(spec)
            assert app.add_task("mark", 5, timeout=10).returning == 5
            # its calls and its notices read by qtasks itself over TLS (no fallback)
            sync = app.backend.sync
            assert [type(c).__name__ for c in (sync._connection(), sync.subscribed())] == \
                ["BlockingWire", "BlockingWire"]
            async_app = AsyncQueueTasks(name="tls", broker_url=url)  # its own TLS connections
            assert asyncio.run(async_app.add_task("mark", 6, timeout=10)).returning == 6
            untrusted = QueueTasks(name="tls", broker_url=f"rediss://127.0.0.1:{server.port}/0")
            with pytest.raises(BackendError):  # no CA given: the certificate is not trusted
                untrusted.add_task("mark", 1)
        finally:
            plain.stop()


def test_qtasks_broker_and_storage_objects_build_the_redis_backend(redis_server, apps):
    spec, _ = apps.app(redis_server.url, name="compat")
    apps.worker(spec)
    sync_app = QueueTasks(name="compat",
                          broker=SyncRedisBroker(name="compat", url=redis_server.url))
    assert sync_app.add_task("mark", 3, timeout=10).returning == 3
    async_app = AsyncQueueTasks(name="compat", broker=AsyncRedisBroker(
        name="compat", url=redis_server.url,
        storage=AsyncRedisStorage(name="compat", url=redis_server.url)))
    import asyncio

    assert asyncio.run(async_app.add_task("mark", 4, timeout=10)).returning == 4
    assert SyncRedisStorage(name="compat", url=redis_server.url).describe().startswith("redis")
    with pytest.raises(NotYetSupported, match="RabbitMQ"):
        __import__("qtasks.brokers", fromlist=["AsyncRabbitMQBroker"]).AsyncRabbitMQBroker()
    with pytest.raises(NotYetSupported, match="socket"):
        __import__("qtasks.brokers", fromlist=["SyncSocketBroker"]).SyncSocketBroker()


def test_connections_name_qtasks_to_redis(redis_server):
    """CLIENT LIST names the library behind each connection (Redis 7.2 and newer keep it)."""
    import asyncio

    import redis

    from qtasks import __version__

    probe = redis.Redis.from_url(redis_server.url, decode_responses=True)
    server = tuple(int(p) for p in probe.info("server")["redis_version"].split(".")[:2])
    if server < (7, 2):
        pytest.skip(f"Redis {server} has no CLIENT SETINFO")
    sync_app = QueueTasks(name="named", broker_url=redis_server.url)
    sync_app.add_task("mark", 1)
    async_app = AsyncQueueTasks(name="named", broker_url=redis_server.url)

    async def listed() -> list[dict]:
        await async_app.add_task("mark", 2)
        return probe.client_list()

    clients = [c for c in asyncio.run(listed()) if c["id"] != str(probe.client_id())]
    assert len(clients) >= 2
    for client in clients:
        assert client["lib-name"] == f"redis-py(qtasks_v{__version__})", client
        assert client["lib-ver"] == redis.__version__, client


def test_a_record_written_by_qtasks_1_7_reads_back(redis_server):
    # The hash QTasks 1.7 writes for a finished task (reference section 11): every value text.
    task_id = str(uuid.uuid4())
    now = time.time()
    with redis_server.client() as r:
        r.hset(f"QueueTasks:{task_id}", mapping={
            "task_name": "report", "priority": "0", "args": json.dumps([1, "a"]),
            "kwargs": json.dumps({"x": 2}), "created_at": str(now - 5),
            "updated_at": str(now), "status": "success", "returning": json.dumps({"ok": True}),
            "retry": "2", "is_testing": "False"})
    app = QueueTasks(broker_url=redis_server.url)  # QTasks' default app name
    record = app.get(task_id)
    assert record is not None
    assert (record.status, record.task_name, record.args, record.kwargs, record.returning) == \
        ("success", "report", (1, "a"), {"x": 2}, {"ok": True})
    assert record.retry == 2
    assert abs(record.created_at.timestamp() - (now - 5)) < 0.01


def test_redis_command_queues_run_the_commands_later_in_order(redis_server, caplog):
    import redis
    import redis.asyncio

    from qtasks.contrib.redis import AsyncRedisCommandQueue, SyncRedisCommandQueue

    client = redis.Redis.from_url(redis_server.url)
    commands = SyncRedisCommandQueue(client)
    for i in range(50):
        commands.execute("rpush", "sync-list", i)
    commands.execute("hset", "no-such-type", "x")  # fails in Redis: logged, not raised
    commands.execute("set", "after-the-failure", "still runs")
    commands.join()
    assert [int(v) for v in client.lrange("sync-list", 0, -1)] == list(range(50))
    assert client.get("after-the-failure") == b"still runs"
    assert "queued Redis command hset failed" in caplog.text
    with pytest.raises(AttributeError):
        commands.execute("no_such_command")  # a misspelt command fails in the caller

    async def use_async():
        aclient = redis.asyncio.Redis.from_url(redis_server.url)
        queue = AsyncRedisCommandQueue(aclient)
        for i in range(20):
            queue.execute("rpush", "async-list", i)
        await queue.join()
        values = await aclient.lrange("async-list", 0, -1)
        await aclient.aclose()
        return [int(v) for v in values]

    import asyncio

    assert asyncio.run(use_async()) == list(range(20))
    # given the app's Redis backend, the queue writes to the server the app uses
    app = QueueTasks(name="commands", broker_url=redis_server.url)
    through_app = SyncRedisCommandQueue(app.broker)
    through_app.execute("set", "via-the-app", "yes")
    through_app.join()
    assert client.get("via-the-app") == b"yes"
    client.close()
