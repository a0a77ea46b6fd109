"""Private Redis servers for the tests that need their own: one they kill or restart, a
three-master Cluster, a master with a replica and three Sentinels, a TLS server. Each listens on
free loopback ports, keeps its files in the test's directory, and is stopped afterwards.

They use the machine's ``redis-server`` and ``redis-cli`` (Redis 7.0 or newer), unless given
another server binary (``RedisServer(binary=...)``: a Redis 6.2).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_port() -> int:
    """A free port that a Cluster node can use: its bus port (+10000) must be free too."""
    for _ in range(200):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair for a cluster node")


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{what} not ready after {timeout}s (last error: {last})")


class RedisServer:
    """``redis-server`` on a free port (or ``port``), started now, with ``options``."""

    def __init__(self, folder: Path, *options: str, port: int | None = None,
                 password: str | None = None, name: str = "redis",
                 binary: str = REDIS_SERVER) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.folder = folder
        self.options = list(options)
        self.password = password
        self.name = name
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / f"{name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           decode_responses=True, socket_timeout=5)

    @contextlib.contextmanager
    def monitored(self) -> Iterator[list[str]]:
        """The commands this server runs inside the block (scripts' own commands too), as
        ``MONITOR`` prints them: the list is complete once the block has ended."""
        seen: list[str] = []
        ready, ended = threading.Event(), threading.Event()

        def record() -> None:
            with self.client() as client, client.monitor() as monitor:
                ready.set()
                for event in monitor.listen():
                    if event["command"] == "ECHO qtasks-test-end":
                        ended.set()
                        return
                    seen.append(event["command"])

        watcher = threading.Thread(target=record, daemon=True)
        watcher.start()
        assert ready.wait(10), "MONITOR did not start"
        try:
            yield seen
        finally:
            with self.client() as client:
                client.echo("qtasks-test-end")
            watcher.join(30)
        # a recorder that died early (a read timed out) saw only part of the block
        assert ended.is_set(), "MONITOR stopped before the end of the block"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.folder), "--logfile", str(self.log), "--save", ""]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.options
        self._launch(args, f"redis-server on port {self.port}")

    def _launch(self, args: list[str], what: str) -> None:
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            _wait(self._ping, 20, what)
        except BaseException:
            self.stop()
            raise

    def _ping(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited: {self.log.read_text(errors='replace')}")
        with self.client() as c:
            return bool(c.ping())

    def kill(self) -> None:
        """``kill -9``: nothing is flushed but what the server already wrote."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Cluster:
    """Three masters, no replicas, on free ports: ``redis+cluster://`` finds them from any."""

    def __init__(self, folder: Path) -> None:
        self.nodes: list[RedisServer] = []
        try:
            self._start(folder)
        except BaseException:
            self.stop()  # no server outlives a set-up that failed half-way
            raise

    def _start(self, folder: Path) -> None:
        for i in range(3):
            node_dir = folder / f"node{i}"
            port = cluster_port()
            self.nodes.append(RedisServer(
                node_dir, "--cluster-enabled", "yes", "--cluster-config-file",
                str(node_dir / "nodes.conf"), "--cluster-node-timeout", "2000",
                "--appendonly", "no", port=port, name="cluster"))
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run([REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        _wait(self._ok, 30, "the cluster")

    def _ok(self) -> bool:
        for node in self.nodes:
            with node.client() as c:
                if c.cluster("info").get("cluster_state") != "ok":
                    return False
        return True

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    def owner(self, key: str) -> int:
        """The port of the master that holds ``key``'s slot."""
        with self.nodes[0].client() as c:
            slot = c.cluster("keyslot", key)
            for start, end, master, *_ in c.cluster("slots"):
                if start <= slot <= end:
                    return int(master[1])
        raise AssertionError(f"no master owns slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class Sentinels:
    """A master, one replica, and three Sentinels watching them as ``mymaster``."""

    service = "mymaster"

    def __init__(self, folder: Path) -> None:
        self.started: list[RedisServer] = []
        try:
            self._start(folder)
        except BaseException:
            for server in reversed(self.started):
                server.stop()
            raise

    def _start(self, folder: Path) -> None:
        self.master = RedisServer(folder / "master", "--appendonly", "no", name="master")
        self.started.append(self.master)
        self.replica = RedisServer(folder / "replica", "--replicaof", "127.0.0.1",
                                   str(self.master.port), name="replica")
        self.started.append(self.replica)
        self.sentinels: list[RedisServer] = []
        for i in range(3):
            sdir = folder / f"sentinel{i}"
            sdir.mkdir(parents=True, exist_ok=True)
            conf = sdir / "sentinel.conf"
            conf.write_text(
                f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.service} 1000\n"
                f"sentinel failover-timeout {self.service} 5000\n"
                "sentinel resolve-hostnames no\n")
            self.sentinels.append(_SentinelServer(sdir, conf))
            self.started.append(self.sentinels[-1])
        _wait(self._replicated, 30, "the replica")

    def _replicated(self) -> bool:  # the first full sync done: the replica is online
        with self.master.client() as c:
            return c.info("replication").get("slave0", {}).get("state") == "online"

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def current_master(self) -> int:
        with self.sentinels[0].client() as c:
            _host, port = c.sentinel_get_master_addr_by_name(self.service)
            return int(port)

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.master):
            server.stop()


class _SentinelServer(RedisServer):
    def __init__(self, folder: Path, conf: Path) -> None:
        self.conf = conf
        super().__init__(folder, name="sentinel")

    def start(self) -> None:
        args = [REDIS_SERVER, str(self.conf), "--sentinel", "--port", str(self.port),
                "--bind", "127.0.0.1", "--dir", str(self.folder), "--logfile", str(self.log)]
        self._launch(args, f"sentinel on port {self.port}")


@contextlib.contextmanager
def tls_server(folder: Path) -> Iterator[tuple[RedisServer, Path]]:
    """A Redis that speaks TLS only, with a certificate signed by a CA made here; yields the
    server (``tls_port``) and the CA file a client must trust."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.crt", "server.key",
                                                     "server.csr", "server.crt"))
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=qtasks test CA",
        "-keyout", str(ca_key), "-out", str(ca))
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key),
        "-out", str(csr))
    ssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-extfile", str(ext), "-out", str(cert))
    port = free_port()
    server = _TlsServer(folder, port, cert, key, ca)
    try:
        yield server, ca
    finally:
        server.stop()


class _TlsServer(RedisServer):
    def __init__(self, folder: Path, port: int, cert: Path, key: Path, ca: Path) -> None:
        self.tls = (cert, key, ca)
        super().__init__(folder, port=port, name="tls")

    def start(self) -> None:
        cert, key, ca = self.tls
        args = [REDIS_SERVER, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.folder), "--logfile", str(self.log), "--save", "",
                "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        self._launch(args, f"TLS redis-server on port {self.port}")

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, ssl=True,
                           ssl_ca_certs=str(self.tls[2]), decode_responses=True, socket_timeout=5)


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def rss_kb(pid: int) -> int:
    """Resident set size of a process, in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
