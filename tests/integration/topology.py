"""The production shape on one machine, without Docker: a real redis-server with AOF
`appendfsync always` and a real nginx running deploy/nginx/nginx.conf, each on its own
loopback port and in its own directory (the gateways are `processes.GatewayProcess`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import tempfile
from pathlib import Path

import pytest

from tests.integration.processes import ROOT, free_port

NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
# Debian puts nginx in /usr/sbin, which is not on every user's PATH.
NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx")
_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def require(binary: str | None, what: str) -> str:
    """The binary, or a skip outside CI (in CI, where .ci/run installs it, a failure)."""
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {what} (.ci/run installs it)")
        pytest.skip(f"{what} is not installed")
    return binary


def nginx_binary() -> str | None:
    for candidate in NGINX_CANDIDATES:
        if found := shutil.which(candidate):
            return found
    return None


async def _until_listening(port: int, proc: asyncio.subprocess.Process, what: str) -> None:
    for _ in range(200):
        if proc.returncode is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} is not listening on {port}")


async def _stop(proc: asyncio.subprocess.Process | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.returncode is not None:
        return
    proc.send_signal(sig)
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()


class RedisServer:
    """redis-server as docker-compose.yml runs it: every write fsynced to the AOF."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "redis"
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        binary = require(shutil.which("redis-server"), "redis-server")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await _until_listening(self.port, self.proc, "redis-server")

    async def stop(self) -> None:
        await _stop(self.proc)


def nginx_conf(*, listen: int, upstreams: list[int], workdir: Path) -> str:
    """deploy/nginx/nginx.conf for a local run: listening on 127.0.0.1:`listen`, the
    upstream's servers on the given local ports (with the file's own server parameters:
    max_fails, fail_timeout, …) and nginx's temporary files in `workdir`. Everything else is
    the file as shipped."""
    text = NGINX_CONF.read_text()
    servers = []
    for line in _block(text, "upstream servers"):
        # `server gateway:8080 resolve max_fails=1 …;`: keep the parameters but `resolve`
        # (a name to look up in Docker's DNS; here there is none to look up).
        words = line.removeprefix("server").rstrip(";").split()
        params = " ".join(w for w in words[1:] if w != "resolve")
        servers += [f"server 127.0.0.1:{port} {params};" for port in upstreams]
    text = _replace(text, "upstream servers", servers)
    text = _replace(text, "listen", [f"listen 127.0.0.1:{listen};"])
    temp = "".join(f"    {kind}_temp_path {workdir / kind};\n" for kind in _TEMP_PATHS)
    text, count = re.subn(r"^http \{\n", "http {\n" + temp, text, flags=re.M)
    assert count == 1, "deploy/nginx/nginx.conf has no `http {` block"
    return text


def _block(text: str, marker: str) -> list[str]:
    found = re.findall(rf"# BEGIN {marker}\n(.*?)\n\s*# END {marker}", text, flags=re.S)
    assert len(found) == 1, f"deploy/nginx/nginx.conf lost its `# BEGIN {marker}` block"
    lines = [line.strip() for line in found[0].splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _replace(text: str, marker: str, lines: list[str]) -> str:
    _block(text, marker)
    pattern = re.compile(rf"(# BEGIN {marker}\n)(.*?)(\n(\s*)# END {marker})", flags=re.S)

    def swap(match: re.Match[str]) -> str:
        indent = match.group(4)
        return match.group(1) + "\n".join(indent + line for line in lines) + match.group(3)

    return pattern.sub(swap, text)


class Nginx:
    """nginx in the foreground with its own prefix, pid file and logs: no root needed, and
    nothing of the system's nginx is touched. The access log (`/dev/stdout` in the shipped
    file) lands in `access_log_path`."""

    def __init__(self, upstreams: list[int]) -> None:
        self.port = free_port()
        self.upstreams = upstreams
        # Not under pytest's tmp_path: when the tests run as root, nginx's workers run as
        # `nobody`, which must be able to reach the temporary files' directories.
        self.dir = Path(tempfile.mkdtemp(prefix="dgw-nginx-"))
        self.dir.chmod(0o755)
        self.conf_path = self.dir / "nginx.conf"
        self.access_log_path = self.dir / "access.log"
        self.error_log_path = self.dir / "error.log"
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        binary = require(nginx_binary(), "nginx")
        self.conf_path.write_text(
            nginx_conf(listen=self.port, upstreams=self.upstreams, workdir=self.dir)
        )
        globals_ = f"daemon off; pid {self.dir / 'nginx.pid'}; error_log {self.error_log_path};"
        with self.access_log_path.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                binary,
                "-p",
                f"{self.dir}/",
                "-c",
                str(self.conf_path),
                "-g",
                globals_,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        try:
            await _until_listening(self.port, self.proc, "nginx")
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.errors()}") from None

    async def stop(self) -> None:
        # SIGQUIT: the graceful stop, as `nginx -s quit`.
        await _stop(self.proc, signal.SIGQUIT)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def errors(self) -> str:
        with contextlib.suppress(OSError):
            return self.error_log_path.read_text(errors="replace")
        return ""

    def access_log(self) -> list[str]:
        with contextlib.suppress(OSError):
            return self.access_log_path.read_text(errors="replace").splitlines()
        return []
