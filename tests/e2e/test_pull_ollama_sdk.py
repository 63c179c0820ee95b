"""The official `ollama` Python client pulling from a real agentport server, which pulls from a
local registry (blobs redirected to another path, as Ollama's registry redirects to its CDN):
the progress stream, the non-streaming answer, and the errors."""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import pytest

import live_server as servers
from registry_server import LocalRegistry

STATUSES = ["pulling manifest", "verifying sha256 digest", "writing manifest", "success"]


@pytest.fixture(scope="module")
def registry() -> Iterator[LocalRegistry]:
    with LocalRegistry(redirect_blobs=True) as local:
        yield local


@pytest.fixture(scope="module")
def sdk_server(
    registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[servers.LiveServer]:
    env = {"AGENTPORT_REGISTRY": registry.url, "AGENTPORT_CONTEXT_LENGTH": "2048"}
    live = servers.start_server(tmp_path_factory.mktemp("sdk-pull-home"), extra_env=env)
    yield live
    servers.stop_server(live)


@pytest.fixture
def client(sdk_server: servers.LiveServer) -> ollama.Client:
    return ollama.Client(host=sdk_server.url, timeout=120)


def test_pull_stream(client, registry):
    blobs = registry.add_model("library/sdk:v1", "sdk-stream")
    parts = list(client.pull("sdk:v1", stream=True))
    assert all(isinstance(part, ollama.ProgressResponse) for part in parts)
    assert [p.status for p in parts if not p.digest] == STATUSES
    assert parts[0].status == "pulling manifest" and parts[-1].status == "success"
    for blob in blobs.values():
        series = [p for p in parts if p.digest == blob.digest]
        assert series and all(p.status == f"pulling {blob.hex[:12]}" for p in series)
        assert all(p.total == blob.size and 0 <= p.completed <= p.total for p in series)
        assert series[-1].completed == blob.size
    names = [model.model for model in client.list().models]
    assert "sdk:v1" in names


def test_pull_non_streaming(client, registry):
    registry.add_model("library/sdk:v2", "sdk-quiet")
    response = client.pull("sdk:v2")
    assert isinstance(response, ollama.ProgressResponse) and response.status == "success"
    assert client.show("sdk:v2").details.format == "gguf"


def test_pull_unknown_model_raises(client):
    with pytest.raises(ollama.ResponseError) as caught:
        client.pull("no-such-model:v1")
    assert caught.value.status_code == 404
    assert "not found in the registry" in caught.value.error
    with pytest.raises(ollama.ResponseError):
        list(client.pull("no-such-model:v1", stream=True))


def test_push_is_refused(client):
    with pytest.raises(ollama.ResponseError) as caught:
        client.push("smollm2:135m")
    assert caught.value.status_code == 501
