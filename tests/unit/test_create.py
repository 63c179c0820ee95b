"""Creating models in a temporary store: GGUF files linked (or copied) in as blobs, text layers
and config, FROM an existing model, uploads, and nothing visible when a create fails."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from agentport.errors import InvalidRequestError, ModelNotFoundError, RequestTooLargeError
from agentport.store import create as create_module
from agentport.store.create import (
    create,
    describe,
    parse_content_length,
    receive_blob,
    show_modelfile,
)
from agentport.store.embedded import packaged_gguf
from agentport.store.modelfile import Modelfile, parse_modelfile
from agentport.store.models import (
    MAX_TEXT_LAYER_BYTES,
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


NOT_IMPORTED = "not a file this server imports"
IMPORT_HINT = (
    "; upload it with POST /api/blobs/<digest> and give FROM @sha256:<digest> (the agentport "
    "CLI does), or put it under the folder AGENTPORT_IMPORT_DIR names"
)


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
    entry = create(store, "me/small:1", parsed, events.append, import_dir=embedded_copy.parent)
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
    entry = create(store, "tiny", parsed, lambda e: None, import_dir=tiny_gguf.parent)
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
    create(store, "base", parse_modelfile(MODELFILE), lambda e: None, import_dir=tiny_gguf.parent)
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
    parsed = Modelfile(source=str(tiny_gguf))
    entry = create(store, "copied", parsed, lambda e: None, import_dir=tiny_gguf.parent)
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
        create(store, "broken", parsed, lambda e: None, import_dir=tiny_gguf.parent)
    assert store.list() == []
    assert not store.manifest_path(parse_name("broken")).exists()
    assert not list(store.root.rglob(".partial*"))


def test_replacing_a_model_removes_its_orphaned_layers(store, tiny_gguf):
    for system in ("old", "new"):
        parsed = Modelfile(source=str(tiny_gguf), system=system)
        create(store, "m", parsed, lambda e: None, import_dir=tiny_gguf.parent)
        if system == "old":
            old_system = _layers(store, "m")[SYSTEM_MEDIA_TYPE]["digest"]
    assert not store.blob_path(old_system).exists()
    assert _text(store, _layers(store, "m")[SYSTEM_MEDIA_TYPE]) == "new"
    assert sorted(p.name for p in store.blobs.iterdir()) == sorted(
        {"sha256-" + d.removeprefix("sha256:") for d in _blob_digests(store)}
    )


async def _pieces(data: bytes, size: int = 100) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _receive(store: ModelStore, digest: str, data: bytes, announced: int | None) -> None:
    asyncio.run(receive_blob(store, digest, announced, _pieces(data), 0))


@pytest.mark.parametrize("announced", [True, False])
def test_from_an_uploaded_blob(store, tiny_gguf, announced):
    data = tiny_gguf.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _receive(store, digest, data, len(data) if announced else None)
    entry = create(store, "uploaded", Modelfile(source="@" + digest), lambda e: None)
    assert entry.model_path == store.blob_path(digest)


@pytest.mark.parametrize(
    ("body", "announced", "error", "message"),
    [
        (b"something else", None, InvalidRequestError, "digest mismatch"),
        (b"expected", 4, RequestTooLargeError, "larger than the 4 bytes announced"),
        (b"expected" * 1000, 10, RequestTooLargeError, "larger than the 10 bytes announced"),
        (b"expect", 8, InvalidRequestError, "not the 8 announced"),
        (b"expected", 1 << 62, RequestTooLargeError, "not enough disk space"),
    ],
)
def test_a_bad_upload_leaves_nothing(store, body, announced, error, message):
    digest = "sha256:" + hashlib.sha256(b"expected").hexdigest()
    with pytest.raises(error, match=message):
        _receive(store, digest, body, announced)
    assert list(store.blobs.iterdir()) == []


def test_an_upload_cut_off_midway_leaves_nothing(store):
    async def cut_off() -> AsyncIterator[bytes]:
        yield b"exp"
        raise ConnectionResetError("the client went away")

    digest = "sha256:" + hashlib.sha256(b"expected").hexdigest()
    with pytest.raises(ConnectionResetError):
        asyncio.run(receive_blob(store, digest, 8, cut_off(), 0))
    assert list(store.blobs.iterdir()) == []


def test_an_unannounced_upload_stops_at_the_disk_margin(store):
    digest = "sha256:" + hashlib.sha256(b"expected").hexdigest()
    free = shutil.disk_usage(store.root.parent).free
    with pytest.raises(RequestTooLargeError, match="not enough disk space"):
        asyncio.run(receive_blob(store, digest, None, _pieces(b"expected"), free))
    assert list(store.blobs.iterdir()) == []


@pytest.mark.parametrize("content_length", [None, "", "abc", "-3", "12"])
def test_content_length(content_length):
    expected = 12 if content_length == "12" else None
    assert parse_content_length(content_length) == expected


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("./not-gguf.bin", InvalidRequestError, "is not a GGUF file"),
        ("./bad-header.gguf", InvalidRequestError, "is not a valid GGUF file"),
        ("./missing.gguf", InvalidRequestError, NOT_IMPORTED),
        ("/etc/passwd", InvalidRequestError, NOT_IMPORTED),
        ("../outside.gguf", InvalidRequestError, NOT_IMPORTED),
        ("./link-out.gguf", InvalidRequestError, NOT_IMPORTED),
        ("./unreadable.gguf", InvalidRequestError, NOT_IMPORTED),
        ("ghost:1b", ModelNotFoundError, "ghost:1b"),
        ("@sha256:" + "0" * 64, InvalidRequestError, "upload it first"),
    ],
)
def test_bad_sources_are_refused_before_anything_is_written(
    store, tmp_path, source, error, message
):
    imports = tmp_path / "imports"
    imports.mkdir()
    (imports / "not-gguf.bin").write_bytes(b"#!/bin/sh\n")
    (imports / "bad-header.gguf").write_bytes(b"GGUF" + b"\x03\0\0\0" + b"\xff" * 100)
    (tmp_path / "outside.gguf").write_bytes(b"GGUF")
    (imports / "link-out.gguf").symlink_to(tmp_path / "outside.gguf")
    (imports / "unreadable.gguf").write_bytes(b"GGUF")
    (imports / "unreadable.gguf").chmod(0)
    if source == "./unreadable.gguf" and os.access(imports / "unreadable.gguf", os.R_OK):
        pytest.skip("running as root: every file is readable")
    with pytest.raises(error, match=message) as caught:
        create(store, "x", Modelfile(source=source), lambda e: None, import_dir=imports)
    if message == NOT_IMPORTED:  # one message, whether the file is missing, outside or unreadable
        assert caught.value.message == f"FROM {source}: {NOT_IMPORTED}" + IMPORT_HINT
    assert not store.blobs.exists() or list(store.blobs.iterdir()) == []


def test_without_an_import_folder_no_path_is_read(store, tiny_gguf):
    with pytest.raises(InvalidRequestError, match=NOT_IMPORTED):
        create(store, "x", Modelfile(source=str(tiny_gguf)), lambda e: None)
    assert not store.blobs.exists() or list(store.blobs.iterdir()) == []


@pytest.mark.parametrize("field", ["template", "system"])
def test_text_layers_past_the_limit_are_refused(store, tiny_gguf, field):
    parsed = Modelfile(source=str(tiny_gguf), **{field: "x" * (MAX_TEXT_LAYER_BYTES + 1)})
    with pytest.raises(InvalidRequestError, match="larger than"):
        create(store, "x", parsed, lambda e: None, import_dir=tiny_gguf.parent)
    assert not store.blobs.exists() or list(store.blobs.iterdir()) == []


def test_files_under_the_store_are_owner_only(tmp_path, tiny_gguf, monkeypatch):
    monkeypatch.setattr(create_module.os, "link", _no_link)  # a copy gets the store's mode
    store = ModelStore(tmp_path / "home" / "models")
    parsed = Modelfile(source=str(tiny_gguf), system="s")
    create(store, "me/private", parsed, lambda e: None, import_dir=tiny_gguf.parent)
    for path in [store.root.parent, *store.root.parent.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


def _no_link(*args, **kwargs):
    raise OSError("cross-device link")


def test_a_model_name_with_a_digest_is_refused(store, tiny_gguf):
    with pytest.raises(InvalidRequestError, match="digest"):
        create(store, "m@sha256:" + "a" * 64, Modelfile(source=str(tiny_gguf)), lambda e: None)


def test_show_modelfile_recreates_the_model(store, tiny_gguf):
    parsed = parse_modelfile(MODELFILE)
    entry = create(store, "orig", parsed, lambda e: None, import_dir=tiny_gguf.parent)
    text = show_modelfile(store, entry)
    assert text.startswith('# Modelfile generated by "agentport show"')
    assert "# FROM orig:latest" in text
    described = parse_modelfile(text)
    assert described == describe(store, entry)
    assert described.source == str(entry.model_path.absolute())
    again = create(store, "again", described, lambda e: None)  # FROM its blob: no import folder
    assert _manifest(store, "again") == _manifest(store, "orig")
    assert os.path.samefile(again.model_path, entry.model_path)
