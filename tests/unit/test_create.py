"""Creating models in a temporary store: GGUF files linked (or copied) in as blobs, text layers
and config, FROM an existing model, uploads, and nothing visible when a create fails."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from agentport.errors import InvalidRequestError, ModelNotFoundError
from agentport.store import create as create_module
from agentport.store.create import BlobUpload, create, describe, show_modelfile
from agentport.store.embedded import packaged_gguf
from agentport.store.modelfile import Modelfile, parse_modelfile
from agentport.store.models import (
    MESSAGES_MEDIA_TYPE,
    MODEL_MEDIA_TYPE,
    PARAMS_MEDIA_TYPE,
    SYSTEM_MEDIA_TYPE,
    TEMPLATE_MEDIA_TYPE,
    ModelStore,
    file_sha256,
)
from agentport.store.names import parse_name

MODELFILE = """FROM ./tiny.gguf
TEMPLATE \"\"\"{% for m in messages %}{{ m.content }}{% endfor %}\"\"\"
SYSTEM "You answer in French."
PARAMETER temperature 0.1
PARAMETER stop <|end|>
MESSAGE user Bonjour
MESSAGE assistant Salut !
LICENSE MIT
"""


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    """A small valid GGUF: the header read_shape needs and one f16 tensor."""
    path = tmp_path / "tiny.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_context_length(256)
    writer.add_embedding_length(8)
    writer.add_head_count(2)
    writer.add_file_type(1)
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def embedded_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded GGUF, copied once next to the temporary stores (same filesystem)."""
    source = packaged_gguf()
    if source is None:
        pytest.skip("the embedded model package is not installed")
    target = tmp_path_factory.mktemp("embedded") / "smollm2.gguf"
    shutil.copyfile(source, target)
    return target


def _manifest(store: ModelStore, name: str) -> dict:
    return json.loads(store.manifest_path(store.get(name).name).read_bytes())


def _layers(store: ModelStore, name: str) -> dict[str, dict]:
    return {layer["mediaType"]: layer for layer in _manifest(store, name)["layers"]}


def _text(store: ModelStore, layer: dict) -> str:
    return store.blob_path(layer["digest"]).read_text()


def test_create_from_the_embedded_gguf_links_the_blob(store, embedded_copy):
    events: list[dict] = []
    parsed = Modelfile(source=str(embedded_copy), system="Be brief.")
    entry = create(store, "me/small:1", parsed, events.append)
    assert entry.model_path.stat().st_ino == embedded_copy.stat().st_ino  # a hard link
    assert entry.config == {
        "model_format": "gguf",
        "model_family": "llama",
        "file_type": "Q4_1",
        "parameter_size": "135M",
    }
    digest = file_sha256(embedded_copy)
    layers = _layers(store, "me/small:1")
    assert layers[MODEL_MEDIA_TYPE] == {
        "mediaType": MODEL_MEDIA_TYPE,
        "digest": digest,
        "size": embedded_copy.stat().st_size,
    }
    assert _text(store, layers[SYSTEM_MEDIA_TYPE]) == "Be brief."
    statuses = [e["status"] for e in events if "total" not in e]
    assert statuses[0] == f"creating new layer {digest}"
    assert statuses[-2:] == ["writing manifest", "success"]
    assert store.names() == ["me/small:1"]
    assert not list(store.root.rglob(".partial*"))


def test_modelfile_layers_and_config(store, tiny_gguf):
    parsed = parse_modelfile(MODELFILE)
    entry = create(store, "tiny", parsed, lambda e: None, base_dir=tiny_gguf.parent)
    assert entry.name.display == "tiny:latest"
    assert entry.config["model_family"] == "llama"
    assert entry.config["file_type"] == "F16"
    layers = _layers(store, "tiny")
    assert _text(store, layers[TEMPLATE_MEDIA_TYPE]).startswith("{% for m in messages %}")
    assert _text(store, layers[SYSTEM_MEDIA_TYPE]) == "You answer in French."
    assert json.loads(_text(store, layers[PARAMS_MEDIA_TYPE])) == {
        "temperature": 0.1,
        "stop": ["<|end|>"],
    }
    assert json.loads(_text(store, layers[MESSAGES_MEDIA_TYPE])) == [
        {"role": "user", "content": "Bonjour"},
        {"role": "assistant", "content": "Salut !"},
    ]
    assert store.text_layers(entry)["application/vnd.ollama.image.license"] == "MIT"


def test_create_from_an_existing_model_reuses_its_blob_and_inherits(store, tiny_gguf):
    create(store, "base", parse_modelfile(MODELFILE), lambda e: None, base_dir=tiny_gguf.parent)
    events: list[dict] = []
    derived = parse_modelfile("FROM base\nPARAMETER top_k 5\nSYSTEM Réponds en anglais.\n")
    entry = create(store, "derived", derived, events.append)
    base_layers, layers = _layers(store, "base"), _layers(store, "derived")
    model_digest = base_layers[MODEL_MEDIA_TYPE]["digest"]
    assert layers[MODEL_MEDIA_TYPE]["digest"] == model_digest
    assert events[0] == {"status": f"using existing layer {model_digest}"}
    assert layers[TEMPLATE_MEDIA_TYPE] == base_layers[TEMPLATE_MEDIA_TYPE]  # inherited
    assert _text(store, layers[SYSTEM_MEDIA_TYPE]) == "Réponds en anglais."  # replaced
    assert json.loads(_text(store, layers[PARAMS_MEDIA_TYPE])) == {
        "temperature": 0.1,
        "stop": ["<|end|>"],
        "top_k": 5,
    }  # merged
    assert entry.config == store.get("base").config
    assert len(list(store.blobs.iterdir())) == len(set(_blob_digests(store)))


def _blob_digests(store: ModelStore) -> list[str]:
    digests = []
    for name in store.names():
        manifest = _manifest(store, name)
        digests += [manifest["config"]["digest"]] + [x["digest"] for x in manifest["layers"]]
    return digests


def test_a_copy_where_hard_links_fail(store, tiny_gguf, monkeypatch):
    def no_link(*args, **kwargs):
        raise OSError("cross-device link")

    monkeypatch.setattr(create_module.os, "link", no_link)
    entry = create(store, "copied", Modelfile(source=str(tiny_gguf)), lambda e: None)
    assert entry.model_path.read_bytes() == tiny_gguf.read_bytes()
    assert entry.model_path.stat().st_ino != tiny_gguf.stat().st_ino
    assert not list(store.root.rglob(".partial*"))


@pytest.mark.parametrize("stage", ["write_blob_bytes", "write_manifest"])
def test_nothing_is_visible_when_create_fails_midway(store, tiny_gguf, monkeypatch, stage):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ModelStore, stage, broken)
    parsed = parse_modelfile(MODELFILE)
    with pytest.raises(OSError, match="disk full"):
        create(store, "broken", parsed, lambda e: None, base_dir=tiny_gguf.parent)
    assert store.list() == []
    assert not store.manifest_path(parse_name("broken")).exists()
    assert not list(store.root.rglob(".partial*"))


def test_replacing_a_model_removes_its_orphaned_layers(store, tiny_gguf):
    create(store, "m", Modelfile(source=str(tiny_gguf), system="old"), lambda e: None)
    old_system = _layers(store, "m")[SYSTEM_MEDIA_TYPE]["digest"]
    create(store, "m", Modelfile(source=str(tiny_gguf), system="new"), lambda e: None)
    assert not store.blob_path(old_system).exists()
    assert _text(store, _layers(store, "m")[SYSTEM_MEDIA_TYPE]) == "new"
    assert sorted(p.name for p in store.blobs.iterdir()) == sorted(
        {"sha256-" + d.removeprefix("sha256:") for d in _blob_digests(store)}
    )


def test_from_an_uploaded_blob(store, tiny_gguf):
    data = tiny_gguf.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload = BlobUpload(store, digest)
    upload.write(data[:100])
    upload.write(data[100:])
    upload.commit()
    entry = create(store, "uploaded", Modelfile(source="@" + digest), lambda e: None)
    assert entry.model_path == store.blob_path(digest)


def test_an_upload_with_the_wrong_digest_leaves_nothing(store):
    digest = "sha256:" + hashlib.sha256(b"expected").hexdigest()
    upload = BlobUpload(store, digest)
    upload.write(b"something else")
    with pytest.raises(InvalidRequestError, match="digest mismatch"):
        upload.commit()
    assert list(store.blobs.iterdir()) == []


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("./not-gguf.bin", InvalidRequestError, "is not a GGUF file"),
        ("./bad-header.gguf", InvalidRequestError, "is not a valid GGUF file"),
        ("./missing.gguf", InvalidRequestError, "no such file"),
        ("ghost:1b", ModelNotFoundError, "ghost:1b"),
        ("@sha256:" + "0" * 64, InvalidRequestError, "upload it first"),
    ],
)
def test_bad_sources_are_refused_before_anything_is_written(
    store, tmp_path, source, error, message
):
    (tmp_path / "not-gguf.bin").write_bytes(b"#!/bin/sh\n")
    (tmp_path / "bad-header.gguf").write_bytes(b"GGUF" + b"\x03\0\0\0" + b"\xff" * 100)
    with pytest.raises(error, match=message):
        create(store, "x", Modelfile(source=source), lambda e: None, base_dir=tmp_path)
    assert not store.blobs.exists() or list(store.blobs.iterdir()) == []


def test_a_model_name_with_a_digest_is_refused(store, tiny_gguf):
    with pytest.raises(InvalidRequestError, match="digest"):
        create(store, "m@sha256:" + "a" * 64, Modelfile(source=str(tiny_gguf)), lambda e: None)


def test_show_modelfile_recreates_the_model(store, tiny_gguf):
    parsed = parse_modelfile(MODELFILE)
    entry = create(store, "orig", parsed, lambda e: None, base_dir=tiny_gguf.parent)
    text = show_modelfile(store, entry)
    assert text.startswith('# Modelfile generated by "agentport show"')
    assert "# FROM orig:latest" in text
    described = parse_modelfile(text)
    assert described == describe(store, entry)
    assert described.source == str(entry.model_path.absolute())
    again = create(store, "again", described, lambda e: None)
    assert _manifest(store, "again") == _manifest(store, "orig")
    assert os.path.samefile(again.model_path, entry.model_path)
