"""Real `dify-gateway serve` processes for tests that kill, stop and restart them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    """One gateway, run exactly as `dify-gateway serve --config …` runs it."""

    def __init__(self, config: dict[str, Any], workdir: Path, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.config = {**config, "server": {**config.get("server", {}), "port": self.port}}
        self.config["server"].setdefault("host", "127.0.0.1")
        self.path = workdir / f"{name}.yaml"
        self.log_path = workdir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    async def start(self, *, ready: bool = True) -> None:
        self.path.write_text(yaml.safe_dump(self.config))
        log = self.log_path.open("ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.cli",
                "serve",
                "--config",
                str(self.path),
                stdout=log,
                stderr=log,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            log.close()
        if ready:
            await self.wait_ready()

    async def wait_ready(self, within: float = 20.0) -> None:
        async with httpx.AsyncClient(base_url=self.url) as http:
            deadline = asyncio.get_running_loop().time() + within
            while asyncio.get_running_loop().time() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    # Ready, and every bot up: a bot still starting would refuse its first
                    # webhooks (the instance is ready without it).
                    ready = await http.get("/readyz")
                    if ready.status_code == 200 and all_up(ready.json()):
                        return
                if self.proc is not None and self.proc.returncode is not None:
                    break
                await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name} never became ready:\n{self.logs()[-3000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as after an OOM kill or a node failure."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)

    def reload(self, config: dict[str, Any]) -> None:
        """Write `config` (on this process's port) over its file and send SIGHUP."""
        assert self.proc is not None
        self.config = {**config, "server": {**config.get("server", {}), "port": self.port}}
        self.config["server"].setdefault("host", "127.0.0.1")
        self.path.write_text(yaml.safe_dump(self.config))
        self.proc.send_signal(signal.SIGHUP)

    def terminate(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    async def wait(self, within: float = 30.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), within)

    async def stop(self) -> None:
        if self.alive:
            self.terminate()
            try:
                await self.wait(30)
            except TimeoutError:
                self.kill()
                await self.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def client_ports_of(pid: int) -> set[int]:
    """The local ports of the TCP connections process `pid` has open (from /proc), to find
    out which gateway process is the one talking to the fake Dify."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def all_up(readyz: dict[str, object]) -> bool:
    """Whether every bot in a `/readyz` body is up."""
    bots = readyz.get("bots")
    return isinstance(bots, dict) and all(state == "up" for state in bots.values())
