"""The store: manifests and blobs, atomic writes, and the embedded model's registration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentport.errors import InvalidRequestError, ModelNotFoundError
from agentport.planner.context import plan_context
from agentport.planner.gguf_meta import ModelShape
from agentport.store import embedded
from agentport.store.models import MODEL_MEDIA_TYPE, ModelStore
from agentport.store.names import parse_name


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    source = tmp_path / "pkg" / "Model.Q4_1.gguf"
    source.parent.mkdir()
    source.write_bytes(b"GGUF" + b"\0" * 1000)
    monkeypatch.setattr(embedded, "packaged_gguf", lambda: source)
    return source


def test_manifest_round_trip_and_listing(store):
    layer = store.write_blob_bytes(b"weights")
    store.write_manifest(
        parse_name("me/tiny:1b"),
        {"model_family": "llama"},
        [{"mediaType": MODEL_MEDIA_TYPE, **layer}],
    )
    entry = store.get("me/tiny:1b")
    assert entry.model_path.read_bytes() == b"weights"
    assert entry.size == len(b"weights") and entry.digest.startswith("sha256:")
    assert store.names() == ["me/tiny:1b"]
    assert not list(store.root.rglob(".partial-*"))


def test_unknown_model_lists_what_exists(store):
    with pytest.raises(ModelNotFoundError, match="none"):
        store.get("ghost:1b")


@pytest.mark.parametrize("digest", ["sha256:../../etc", "sha256-" + "0" * 63, "md5:abc", ""])
def test_digests_cannot_escape_the_store(store, digest):
    with pytest.raises(InvalidRequestError):
        store.blob_path(digest)


def test_embedded_model_is_linked_not_copied(store, fake_package):
    assert embedded.register_embedded(store)
    entry = store.get(embedded.EMBEDDED_NAME)
    assert entry.name.display == "smollm2:135m"
    assert os.path.samefile(entry.model_path, fake_package)


def test_embedded_model_survives_a_reinstall(store, fake_package):
    embedded.register_embedded(store)
    fake_package.unlink()  # a reinstall removes the file, then writes a new one
    fake_package.write_bytes(b"GGUF" + b"\0" * 1000)
    assert embedded.register_embedded(store)
    assert store.get(embedded.EMBEDDED_NAME).model_path.read_bytes().startswith(b"GGUF")


def test_embedded_registration_without_the_package(store, monkeypatch):
    monkeypatch.setattr(embedded, "packaged_gguf", lambda: None)
    assert embedded.register_embedded(store) is False


def test_real_package_is_found_without_importing_it():
    path = embedded.packaged_gguf()
    assert path is not None and path.suffix == ".gguf" and path.stat().st_size > 50_000_000


SMOLLM2 = ModelShape("llama", 30, 9, 3, 64, 8192, 98_000_000)


@pytest.mark.parametrize(
    "requested,memory,n_ctx,scaling,capped",
    [
        (32768, 16 << 30, 32768, "yarn x4 from 8192", False),
        (8192, 16 << 30, 8192, None, False),
        (32768, 600 << 20, 16128, "yarn x1.96875 from 8192", True),
    ],
)
def test_context_plan(requested, memory, n_ctx, scaling, capped):
    plan = plan_context(SMOLLM2, requested, memory)
    assert (plan.n_ctx, plan.rope_scaling, plan.capped_by_memory) == (n_ctx, scaling, capped)


def test_kv_bytes_per_token():
    assert SMOLLM2.kv_bytes_per_token() == 2 * 30 * 3 * 64 * 2
