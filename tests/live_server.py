"""Real agentport servers for tests: started as `agentport serve` subprocesses on a free
loopback port with their own home, and stopped again. Used by conftest's shared `server` fixture
and by tests that need a server of their own (a local registry, a fake Hugging Face)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    home: Path
    log: Path
    process: subprocess.Popen

    def client(self, timeout: float = 600.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)


def start_server(home: Path, extra_env: dict[str, str] | None = None) -> LiveServer:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTPORT_")}
    env.update(
        AGENTPORT_HOST=f"127.0.0.1:{port}",
        AGENTPORT_HOME=str(home),
        AGENTPORT_THREADS="2",
        AGENTPORT_LOG_LEVEL="info",
        **(extra_env or {}),
    )
    log = home / "server.log"
    home.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "agentport", "serve"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = LiveServer(f"http://127.0.0.1:{port}", home, log, process)
    try:
        wait_until_ready(server)
    except BaseException:
        stop_server(server)  # never leave a server behind
        raise
    return server


def wait_until_ready(server: LiveServer, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited:\n{server.log.read_text()[-3000:]}")
        try:
            loaded = httpx.get(server.url + "/api/ps", timeout=2).json()["models"]
            if loaded:
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server not ready:\n{server.log.read_text()[-3000:]}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
