"""Pulling models from a local registry through a real agentport server (`POST /api/pull`) and
through `agentport pull`: the pulled model answers; an interrupted pull (the registry hangs up,
or Ctrl-C) leaves no model and resumes with a Range request; corrupt bytes are caught and fetched
again; two pulls at once download each blob once; hostile manifests and names are refused.

Every test pulls its own model (its GGUF differs from the others by its `general.name`), so
blob counts never depend on test order."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import live_server as servers
from agentport.config import Settings
from agentport.errors import RequestTooLargeError, UpstreamError
from agentport.store.models import ModelStore
from agentport.store.names import parse_name
from agentport.store.pull import pull
from agentport.store.registry import manifest_url, registry_base
from registry_server import LocalRegistry

STATUSES = ["pulling manifest", "verifying sha256 digest", "writing manifest", "success"]
MB = 1 << 20


@pytest.fixture(scope="module")
def registry() -> Iterator[LocalRegistry]:
    with LocalRegistry() as local:
        yield local


@pytest.fixture(scope="module")
def pull_server(
    registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[servers.LiveServer]:
    home = tmp_path_factory.mktemp("pull-home")
    live = servers.start_server(
        home, extra_env={"AGENTPORT_REGISTRY": registry.url, "AGENTPORT_CONTEXT_LENGTH": "2048"}
    )
    yield live
    servers.stop_server(live)


@pytest.fixture
def http(pull_server: servers.LiveServer, registry: LocalRegistry) -> Iterator[httpx.Client]:
    registry.reset_counters()
    with pull_server.client(timeout=120) as client:
        yield client


def stream_pull(http: httpx.Client, name: str, into: list | None = None) -> list[dict[str, Any]]:
    """The progress events of one streamed pull (appended to `into` as they arrive)."""
    events = [] if into is None else into
    with http.stream("POST", "/api/pull", json={"model": name}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("application/x-ndjson")
        for line in response.iter_lines():
            if line.strip():
                events.append(json.loads(line))
    return events


def listed(http: httpx.Client) -> dict[str, dict[str, Any]]:
    return {model["name"]: model for model in http.get("/api/tags").json()["models"]}


def blob_file(server: servers.LiveServer, digest: str, suffix: str = "") -> Path:
    return server.home / "models" / "blobs" / f"sha256-{digest.removeprefix('sha256:')}{suffix}"


def check_progress(events: list[dict[str, Any]], digests: list[str]) -> None:
    """Statuses in Ollama's order, a complete progress series for every blob."""
    statuses = [event["status"] for event in events if "digest" not in event]
    assert statuses == STATUSES
    for digest in digests:
        series = [event for event in events if event.get("digest") == digest]
        assert series, f"no progress for {digest}"
        assert all(event["status"] == f"pulling {digest[7:19]}" for event in series)
        assert all(0 <= event["completed"] <= event["total"] for event in series)
        assert series[-1]["completed"] == series[-1]["total"]
    last_blob = max(i for i, event in enumerate(events) if "digest" in event)
    assert events[last_blob + 1]["status"] == "verifying sha256 digest"


def test_pull_then_chat(http, registry, pull_server):
    blobs = registry.add_model("library/pulled:v1", "pulled")
    events = stream_pull(http, "pulled:v1")
    check_progress(events, [blob.digest for blob in blobs.values()])
    model = listed(http)["pulled:v1"]
    raw = registry.manifests[("library", "pulled", "v1")]
    assert model["digest"] == hashlib.sha256(raw).hexdigest()  # the manifest as received
    assert model["size"] == sum(blobs[role].size for role in ("model", "template", "params"))
    body = {
        "model": "pulled:v1",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": False,
        "options": {"num_predict": 4, "temperature": 0},
    }
    answer = http.post("/api/chat", json=body).json()
    assert answer["done"] is True and isinstance(answer["message"]["content"], str)
    again = stream_pull(http, "pulled:v1")  # everything present: nothing downloaded
    check_progress(again, [blobs["model"].digest])
    assert registry.gets(blobs["model"].digest) == 1


def test_interrupted_pull_resumes_with_range(http, registry, pull_server):
    blobs = registry.add_model("library/resumed:v1", "resumed")
    model = blobs["model"]
    registry.cut_after(model.digest, 30 * MB)
    events = stream_pull(http, "resumed:v1")
    assert "error" in events[-1] and "pull again to resume" in events[-1]["error"]
    assert "resumed:v1" not in listed(http)
    assert blob_file(pull_server, model.digest, "-partial").stat().st_size == 30 * MB
    assert not blob_file(pull_server, model.digest).exists()
    registry.reset_counters()
    events = stream_pull(http, "resumed:v1")
    assert events[-1] == {"status": "success"}
    assert registry.ranges[model.digest] == [f"bytes={30 * MB}-"]
    assert registry.bytes_served[model.digest] == model.size - 30 * MB
    assert registry.gets(blobs["template"].digest) == 0  # fetched whole the first time
    assert "resumed:v1" in listed(http)
    assert not blob_file(pull_server, model.digest, "-partial").exists()


def test_corrupt_blob_is_fetched_again(http, registry, pull_server):
    blobs = registry.add_model("library/corrupt:v1", "corrupt")
    model = blobs["model"]
    registry.corrupt(model.digest)
    events = stream_pull(http, "corrupt:v1")
    assert events[-1] == {"status": "success"}
    assert registry.gets(model.digest) == 2
    assert registry.bytes_served[model.digest] == 2 * model.size
    assert not blob_file(pull_server, model.digest, "-partial").exists()


def test_a_damaged_stored_blob_is_caught_and_fetched_again(http, registry, pull_server):
    blobs = registry.add_model("library/flipped:v1", "flipped")
    template = blobs["template"]
    assert stream_pull(http, "flipped:v1")[-1] == {"status": "success"}
    stored = blob_file(pull_server, template.digest)
    data = bytearray(stored.read_bytes())
    data[0] ^= 0xFF  # one flipped byte on disk
    stored.write_bytes(bytes(data))
    registry.reset_counters()
    assert stream_pull(http, "flipped:v1")[-1] == {"status": "success"}
    assert registry.gets(template.digest) == 1
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == template.digest.split(":")[1]


def test_blob_corrupt_twice_fails_the_pull(http, registry, pull_server):
    blobs = registry.add_model("library/broken:v1", "broken")
    template = blobs["template"]
    registry.corrupt(template.digest, times=2)
    events = stream_pull(http, "broken:v1")
    assert "sha256" in events[-1]["error"] and template.digest[7:19] in events[-1]["error"]
    assert "broken:v1" not in listed(http)
    assert not blob_file(pull_server, template.digest).exists()
    assert not blob_file(pull_server, template.digest, "-partial").exists()


def test_concurrent_pulls_download_each_blob_once(http, registry, pull_server):
    blobs = registry.add_model("library/twice:v1", "twice")
    model = blobs["model"]
    pause = registry.pause_after(model.digest, 8 * MB)
    seen: list[list[dict[str, Any]]] = [[], []]
    threads = [
        threading.Thread(target=stream_pull, args=(http, "twice:v1", events)) for events in seen
    ]
    for thread in threads:
        thread.start()
    assert pause.reached.wait(30)
    deadline = time.monotonic() + 30
    while not all(any(e.get("digest") == model.digest for e in events) for events in seen):
        assert time.monotonic() < deadline, "the two pulls did not both start"
        time.sleep(0.05)
    pause.release()
    for thread in threads:
        thread.join(60)
    assert [events[-1] for events in seen] == [{"status": "success"}] * 2
    for blob in (model, blobs["template"]):
        assert registry.gets(blob.digest) == 1
    assert registry.bytes_served[model.digest] == model.size


BAD_DIGESTS = [
    "sha256:../../../../../tmp/agentport-escape",
    "sha256-" + "a" * 64 + "/../../../escape",
    "/etc/passwd",
    "sha256:" + "A" * 64,
    "md5:" + "a" * 32,
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_manifest_digests_that_could_escape_are_refused(http, registry, pull_server, digest):
    fine = registry.add_model("library/fine:v1", "fine")
    manifest = json.loads(registry.manifests[("library", "fine", "v1")])
    manifest["layers"][0]["digest"] = digest
    registry.add_manifest("library/evil:v1", json.dumps(manifest).encode())
    response = http.post("/api/pull", json={"model": "evil:v1"})
    assert response.status_code == 400
    assert "invalid digest" in response.json()["error"]
    assert "evil:v1" not in listed(http)
    manifests = pull_server.home / "models" / "manifests"
    assert not (manifests / "registry.ollama.ai" / "library" / "evil").exists()
    assert registry.gets(fine["model"].digest) == 0


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/etc/passwd", "a/b/c/d", "model:../x", "x@sha256:nothex"]
)
def test_names_that_could_escape_are_refused(http, name):
    response = http.post("/api/pull", json={"model": name})
    assert response.status_code == 400 and "error" in response.json()


def test_unknown_model_is_404(http):
    response = http.post("/api/pull", json={"name": "no-such-model:latest"})
    assert response.status_code == 404
    assert response.json() == {"error": "model 'no-such-model:latest' not found in the registry"}


def test_unreachable_registry_is_a_clear_error(pull_server):
    closed_port = servers.free_port()
    settings = Settings(registry=f"http://127.0.0.1:{closed_port}")
    store = ModelStore(pull_server.home / "unused")
    with pytest.raises(UpstreamError, match="cannot reach the registry at http://127.0.0.1:"):
        asyncio.run(drain(pull(store, settings, "x:y")))


async def drain(events: AsyncIterator[dict[str, Any]]) -> None:
    async for _ in events:
        pass


def test_a_loopback_host_the_settings_do_not_name_is_refused(http, registry):
    other_port = servers.free_port()
    for host in (f"127.0.0.1:{other_port}", "localhost:22", "169.254.169.254"):
        response = http.post("/api/pull", json={"model": f"{host}/library/x:y"})
        assert response.status_code == 403, host
        assert "may not reach" in response.json()["error"]


def test_a_redirect_to_another_loopback_port_is_refused(http, registry, pull_server):
    registry.add_model("library/redirected:v1", "redirected")
    with LocalRegistry() as other:
        other.blobs.update(registry.blobs)
        registry.redirect_blobs, registry.redirect_to = True, other.url
        try:
            events = stream_pull(http, "redirected:v1")
        finally:
            registry.redirect_blobs, registry.redirect_to = False, None
        assert "may not reach 127.0.0.1" in events[-1]["error"]
        assert not other.bytes_served
    assert "redirected:v1" not in listed(http)


def test_text_layers_past_the_limit_are_refused_before_any_download(http, registry):
    fine = registry.add_model("library/fine2:v1", "fine2")
    manifest = json.loads(registry.manifests[("library", "fine2", "v1")])
    manifest["layers"][1]["size"] = 64 << 20  # the template layer
    registry.add_manifest("library/bigtext:v1", json.dumps(manifest).encode())
    response = http.post("/api/pull", json={"model": "bigtext:v1"})
    assert response.status_code == 400 and "larger than" in response.json()["error"]
    assert registry.gets(fine["model"].digest) == 0


def test_a_blob_longer_than_announced_is_deleted(http, registry, pull_server):
    blobs = registry.add_model("library/liar:v1", "liar")
    manifest = json.loads(registry.manifests[("library", "liar", "v1")])
    manifest["layers"][0]["size"] -= 1000  # the model layer: the registry sends 1000 more
    registry.add_manifest("library/liar:v2", json.dumps(manifest).encode())
    events = stream_pull(http, "liar:v2")
    assert "more than the" in events[-1]["error"]
    assert not blob_file(pull_server, blobs["model"].digest, "-partial").exists()
    assert not blob_file(pull_server, blobs["model"].digest).exists()
    assert "liar:v2" not in listed(http)


def test_a_pull_needs_room_on_the_disk(registry, tmp_path):
    registry.add_model("library/roomy:v1", "roomy")
    settings = Settings(registry=registry.url, disk_margin=1 << 60)
    store = ModelStore(tmp_path / "models")
    with pytest.raises(RequestTooLargeError, match="not enough disk space"):
        asyncio.run(drain(pull(store, settings, "roomy:v1")))
    assert not store.blobs.exists() or not list(store.blobs.iterdir())


def test_pull_without_streaming_answers_the_last_status(http, registry):
    registry.add_model("library/quiet:v1", "quiet")
    response = http.post("/api/pull", json={"model": "quiet:v1", "stream": False})
    assert response.status_code == 200 and response.json() == {"status": "success"}
    assert "quiet:v1" in listed(http)


HEX = "ab" * 32
URLS = [
    ("smollm2:135m", False, "http://127.0.0.1:9/v2/library/smollm2/manifests/135m"),
    ("me/tiny", False, "http://127.0.0.1:9/v2/me/tiny/manifests/latest"),
    ("example.com/me/tiny:q4", False, "https://example.com/v2/me/tiny/manifests/q4"),
    ("example.com/me/tiny:q4", True, "http://example.com/v2/me/tiny/manifests/q4"),
    ("localhost:5000/me/tiny", False, "http://localhost:5000/v2/me/tiny/manifests/latest"),
    ("127.0.0.2/me/tiny", False, "http://127.0.0.2/v2/me/tiny/manifests/latest"),
    (f"tiny:v1@sha256:{HEX}", False, f"http://127.0.0.1:9/v2/library/tiny/manifests/sha256:{HEX}"),
]


@pytest.mark.parametrize(("name", "insecure", "url"), URLS)
def test_manifest_urls(name, insecure, url):
    settings = Settings(registry="http://127.0.0.1:9/")
    parsed = parse_name(name)
    assert manifest_url(registry_base(settings, parsed, insecure), parsed) == url


def test_push_is_not_supported(http):
    response = http.post("/api/push", json={"model": "smollm2:135m"})
    assert response.status_code == 501
    assert response.json() == {"error": "push is not supported yet"}


def run_cli_pull(server: servers.LiveServer, name: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTPORT_")}
    env.update(AGENTPORT_HOST=server.url.removeprefix("http://"), COLUMNS="120")
    code = (
        "import sys, typer; from agentport.cli.pull import pull_command; "
        "app = typer.Typer(); app.command()(pull_command); app(sys.argv[1:])"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, name],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_pull_ctrl_c_then_resume(http, registry, pull_server):
    blobs = registry.add_model("library/cli:v1", "cli")
    model = blobs["model"]
    partial = blob_file(pull_server, model.digest, "-partial")
    pause = registry.pause_after(model.digest, 20 * MB)
    process = run_cli_pull(pull_server, "cli:v1")
    assert pause.reached.wait(60)
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size == 20 * MB):
        assert time.monotonic() < deadline, "the server did not write the bytes it received"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130 and "again to resume" in err
    assert pause.client_gone.wait(15), "the server kept downloading after the client left"
    assert "cli:v1" not in listed(http)
    assert partial.stat().st_size == 20 * MB
    registry.reset_counters()
    process = run_cli_pull(pull_server, "cli:v1")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "pulling manifest" in out and "success" in out
    assert registry.ranges[model.digest] == [f"bytes={20 * MB}-"]
    assert "cli:v1" in listed(http)


def test_cli_pull_reports_errors(pull_server):
    process = run_cli_pull(pull_server, "no-such-model:latest")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "model 'no-such-model:latest' not found in the registry" in err
