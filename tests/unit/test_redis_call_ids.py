"""Each script call of the Redis backend carries an id that tells a call resent after a lost
reply (the same id) from a new one. The ids are a per-process random prefix and a count, so a
forked child (a web server's worker process, a supervisor's child) must count under a prefix
of its own: the parent's and the child's calls would otherwise share ids. That holds for a fork
that skips Python's fork hooks too, as uWSGI's prefork does unless told otherwise."""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys

import pytest

protocol = pytest.importorskip("qtasks.backends.redis.protocol")


def _hookless_fork() -> int:
    """fork(2) called straight from the C library: Python's at-fork hooks do not run. Through
    ``PyDLL``, which keeps the GIL: a child forked while another thread held it would hang."""
    return ctypes.PyDLL(None, use_errno=True).fork()


@pytest.mark.parametrize("fork", [
    os.fork,
    pytest.param(_hookless_fork, marks=pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="the C library's fork, on Linux")),
], ids=["os.fork", "hookless"])
def test_call_ids_are_distinct_in_a_process_and_across_a_fork(fork):
    ids = [protocol._call_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    read, write = os.pipe()
    child = fork()
    assert child >= 0
    if child == 0:  # pragma: no cover - the child's result goes through the pipe
        try:
            os.write(write, ",".join(protocol._call_id() for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write)
    if not select.select([read], [], [], 30)[0]:  # a child that hangs fails the test, not CI
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        pytest.fail("the forked child wrote nothing in 30 s")
    with os.fdopen(read) as pipe:
        theirs = pipe.read().split(",")
    os.waitpid(child, 0)
    ours = [protocol._call_id() for _ in range(100)]
    assert len(theirs) == 100
    assert not set(theirs) & set(ids + ours)
    prefix = ids[0].rsplit(":", 1)[0]
    assert all(i.startswith(prefix + ":") for i in ours)
    assert not any(i.startswith(prefix + ":") for i in theirs)
