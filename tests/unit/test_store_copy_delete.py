"""ModelStore.copy and ModelStore.delete: a copy shares its blobs; a blob goes away with the last
manifest that references it; unknown and invalid names raise."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentport.errors import InvalidRequestError, ModelNotFoundError
from agentport.store.models import MODEL_MEDIA_TYPE, ModelStore
from agentport.store.names import parse_name


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    store = ModelStore(tmp_path / "models")
    layer = store.write_blob_bytes(b"weights")
    store.write_manifest(
        parse_name("tiny:1b"), {"model_family": "llama"}, [{"mediaType": MODEL_MEDIA_TYPE, **layer}]
    )
    return store


def blobs(store: ModelStore) -> set[str]:
    return {p.name for p in store.blobs.iterdir()}


def test_copy_shares_the_blobs(store):
    before = blobs(store)
    name = store.copy("tiny:1b", "me/tiny-copy:v2")
    assert name.display == "me/tiny-copy:v2"
    original, copy = store.get("tiny:1b"), store.get("me/tiny-copy:v2")
    assert copy.model_path == original.model_path and copy.digest == original.digest
    assert blobs(store) == before
    assert sorted(store.names()) == ["me/tiny-copy:v2", "tiny:1b"]
    assert not list(store.root.rglob(".partial-*"))


def test_delete_a_copy_keeps_the_shared_blobs(store):
    store.copy("tiny:1b", "tiny:copy")
    before = blobs(store)
    assert store.delete("tiny:copy") == []
    assert blobs(store) == before
    assert store.get("tiny:1b").model_path.read_bytes() == b"weights"
    assert store.names() == ["tiny:1b"]


def test_deleting_the_last_reference_removes_the_blobs(store):
    store.copy("tiny:1b", "other/tiny:copy")
    store.delete("tiny:1b")
    removed = store.delete("other/tiny:copy")
    assert len(removed) == 2  # the weights and the config
    assert blobs(store) == set()
    assert store.names() == []
    assert not any(p.is_dir() for p in store.manifests.rglob("*"))  # empty folders pruned


def test_delete_keeps_blobs_of_other_models(store):
    layer = store.write_blob_bytes(b"other weights")
    store.write_manifest(
        parse_name("big:7b"), {"model_family": "llama"}, [{"mediaType": MODEL_MEDIA_TYPE, **layer}]
    )
    store.delete("tiny:1b")
    assert store.get("big:7b").model_path.read_bytes() == b"other weights"
    assert store.names() == ["big:7b"]


@pytest.mark.parametrize(
    "call,error",
    [
        (lambda s: s.delete("ghost:1b"), ModelNotFoundError),
        (lambda s: s.copy("ghost:1b", "x:1"), ModelNotFoundError),
        (lambda s: s.copy("tiny:1b", "../escape"), InvalidRequestError),
        (lambda s: s.delete("a/b/c/d"), InvalidRequestError),
    ],
)
def test_unknown_or_invalid_names_raise(store, call, error):
    with pytest.raises(error):
        call(store)
    assert store.names() == ["tiny:1b"]
