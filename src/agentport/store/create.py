"""Creating models: `create(store, name, parsed, progress)` turns a parsed Modelfile into a
manifest and its layers; `receive_blob` stores a blob uploaded over HTTP; `describe` and
`show_modelfile` read a model back as a Modelfile.

The model layer is the GGUF file FROM names (brought into the store by a hard link when the
filesystem allows, else copied), an uploaded blob, or an existing model's blob (whose other
layers are inherited: the Modelfile's TEMPLATE, SYSTEM, MESSAGE and LICENSE replace them, its
PARAMETERs are merged over them). Text layers follow, then the config blob and, last and
atomically, the manifest: a create that fails midway leaves nothing `list` can see.

`plan` does every cheap check (the name, FROM, the GGUF's magic bytes and header) so errors are
raised before a route starts streaming; `build` does the slow part and reports progress as
Ollama's status dicts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agentport.config import make_private_dir, private_opener
from agentport.errors import InvalidRequestError, ModelLoadError
from agentport.planner.gguf_meta import format_params, read_shape
from agentport.store.modelfile import (
    Modelfile,
    is_blob_reference,
    looks_like_path,
    to_modelfile,
)
from agentport.store.models import (
    LICENSE_MEDIA_TYPE,
    MESSAGES_MEDIA_TYPE,
    MODEL_MEDIA_TYPE,
    PARAMS_MEDIA_TYPE,
    SYSTEM_MEDIA_TYPE,
    TEMPLATE_MEDIA_TYPE,
    TEXT_MEDIA_TYPES,
    BlobWriter,
    ModelEntry,
    ModelStore,
    check_text_layer_size,
)
from agentport.store.names import ModelName, parse_name

Progress = Callable[[dict[str, Any]], None]
GGUF_MAGIC = b"GGUF"
PROGRESS_INTERVAL = 0.25  # seconds between progress reports while a big file is read
CHUNK = 1 << 20
_BLOB_FILE = re.compile(r"sha256-[0-9a-f]{64}")
UPLOAD_FLUSH_BYTES = 4 << 20  # an upload's pieces are written to disk in batches this big


@dataclass
class Base:
    """What FROM names, resolved: a GGUF file to bring into the store, or an existing layer."""

    config: dict[str, Any]
    gguf: Path | None = None
    model_layer: dict[str, Any] | None = None
    inherited: Modelfile = field(default_factory=Modelfile)  # an existing model's text layers
    other_layers: list[dict[str, Any]] = field(default_factory=list)  # e.g. a projector


@dataclass
class CreatePlan:
    name: ModelName
    parsed: Modelfile
    base: Base


def create(
    store: ModelStore,
    name: str,
    parsed: Modelfile,
    progress: Progress,
    import_dir: Path | None = None,
    shape_cache: Path | None = None,
) -> ModelEntry:
    """Create (or replace) model `name`; a FROM path must lie under `import_dir`."""
    job = plan(store, name, parsed, import_dir, shape_cache)
    build(store, job, progress)
    progress({"status": "success"})
    return store.get(job.name.display)


# --- plan: every check that needs no heavy work ----------------------------------------------


def plan(
    store: ModelStore,
    name: str,
    parsed: Modelfile,
    import_dir: Path | None = None,
    shape_cache: Path | None = None,
) -> CreatePlan:
    """Check everything cheap. FROM may name an uploaded blob, a model, or a file under
    `import_dir` (relative paths are read from it); with no `import_dir` no path is read."""
    target = parse_name(name)
    if target.digest:
        raise InvalidRequestError("the name of a model to create cannot pin a digest", "model")
    if not parsed.source:
        raise InvalidRequestError("FROM is required: a GGUF file or an existing model", "from")
    _check_text_sizes(parsed)
    return CreatePlan(target, parsed, _resolve(store, parsed.source, import_dir, shape_cache))


def _check_text_sizes(parsed: Modelfile) -> None:
    texts = [parsed.template, parsed.system, *parsed.licenses]
    texts += [json.dumps(parsed.parameters), json.dumps(parsed.messages)]
    for text in texts:
        if text:
            check_text_layer_size(
                len(text.encode()), "a template, system, license, parameters or messages layer"
            )


def _resolve(
    store: ModelStore, source: str, import_dir: Path | None, shape_cache: Path | None
) -> Base:
    if is_blob_reference(source):
        return _from_blob(store, source[1:], shape_cache)
    if looks_like_path(source):
        digest = _stored_blob_digest(store, source)
        if digest is not None:  # `show --modelfile` writes FROM <the model's blob path>
            return _from_blob(store, digest, shape_cache)
        path = importable_path(source, import_dir)
        check_gguf(path)
        # No metadata cache here: its key (file name and size) is only safe for blobs.
        return Base(config=gguf_config(path, None), gguf=path)
    entry = store.get(source)
    model_layer, inherited, others = read_layers(store, entry)
    return Base(dict(entry.config), None, model_layer, inherited, others)


def _stored_blob_digest(store: ModelStore, source: str) -> str | None:
    """The digest of the blob a FROM path names in the store's blobs folder, if it is one."""
    path = Path(source)
    if path.parent != store.blobs.absolute() or not _BLOB_FILE.fullmatch(path.name):
        return None
    return "sha256:" + path.name.removeprefix("sha256-")


def importable_path(source: str, import_dir: Path | None) -> Path:
    """The readable file under `import_dir` that a FROM path names. One error, whether the
    path is missing, outside the folder or unreadable, so it tells nothing about the disk."""
    refused = InvalidRequestError(
        f"FROM {source[:200]}: not a file this server imports; upload it with "
        "POST /api/blobs/<digest> and give FROM @sha256:<digest> (the agentport CLI does), "
        "or put it under the folder AGENTPORT_IMPORT_DIR names",
        "from",
    )
    if import_dir is None:
        raise refused
    try:
        root = import_dir.expanduser().resolve()
        path = (root / Path(source).expanduser()).resolve()
        with path.open("rb"):
            pass
    except (OSError, RuntimeError) as exc:
        raise refused from exc
    if not path.is_relative_to(root) or not path.is_file():
        raise refused
    return path


def _from_blob(store: ModelStore, digest: str, shape_cache: Path | None) -> Base:
    path = store.blob_path(digest)
    canonical = "sha256:" + path.name.removeprefix("sha256-")
    if not path.is_file():
        raise InvalidRequestError(
            f"blob {canonical} not found; upload it first with POST /api/blobs/{canonical}",
            "files",
        )
    check_gguf(path)
    layer = {"mediaType": MODEL_MEDIA_TYPE, "digest": canonical, "size": path.stat().st_size}
    return Base(config=gguf_config(path, shape_cache), model_layer=layer)


def check_gguf(path: Path) -> None:
    """Refuse a file that does not start with GGUF's magic bytes."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {path.name}: {exc.strerror}", "from") from exc
    if magic != GGUF_MAGIC:
        raise InvalidRequestError(f"{path.name} is not a GGUF file", "from")


def gguf_config(path: Path, shape_cache: Path | None) -> dict[str, Any]:
    """The config blob's content, read from the GGUF header."""
    try:
        shape = read_shape(path, shape_cache)  # bounded: refuses a damaged header itself
    except InvalidRequestError as exc:  # "not a valid GGUF file: <why>"
        raise InvalidRequestError(f"{path.name} is {exc.message}", "from") from exc
    except ModelLoadError as exc:
        raise InvalidRequestError(f"{path.name} could not be read as a GGUF file", "from") from exc
    count = shape.parameter_count
    return {
        "model_format": "gguf",
        "model_family": shape.architecture,
        "file_type": shape.quantization,
        "parameter_size": format_params(count) if count else "",
    }


# --- build: layers, then the manifest ---------------------------------------------------------


def build(store: ModelStore, job: CreatePlan, progress: Progress) -> None:
    """Write the layers and the manifest; the caller reports `success` (after, say, unloading
    the model's old version)."""
    base = job.base
    if base.gguf is not None:
        model_layer = import_gguf(store, base.gguf, progress)
    else:
        assert base.model_layer is not None
        model_layer = base.model_layer
        _report(progress, model_layer["digest"], existed=True)
    merged = merge(base.inherited, job.parsed)
    layers = [model_layer, *_text_layers(store, merged, progress), *base.other_layers]
    progress({"status": "writing manifest"})
    previous = _manifest_digests(store.manifest_path(job.name))
    config = dict(base.config)
    if merged.parser:
        config["parser"] = merged.parser
    store.write_manifest(job.name, config, layers)
    _remove_orphans(store, previous)


def merge(base: Modelfile, new: Modelfile) -> Modelfile:
    """An existing model's layers with a Modelfile's over them, as Ollama merges them."""
    return Modelfile(
        source=new.source,
        template=base.template if new.template is None else new.template,
        system=base.system if new.system is None else new.system,
        parameters={**base.parameters, **new.parameters},
        messages=new.messages or base.messages,
        licenses=new.licenses or base.licenses,
        parser=new.parser or base.parser,
    )


def _text_layers(store: ModelStore, merged: Modelfile, progress: Progress) -> list[dict]:
    items: list[tuple[str, bytes]] = []
    if merged.template:
        items.append((TEMPLATE_MEDIA_TYPE, merged.template.encode()))
    if merged.system:
        items.append((SYSTEM_MEDIA_TYPE, merged.system.encode()))
    if merged.parameters:
        items.append((PARAMS_MEDIA_TYPE, json.dumps(merged.parameters).encode()))
    if merged.messages:
        items.append((MESSAGES_MEDIA_TYPE, json.dumps(merged.messages).encode()))
    items += [(LICENSE_MEDIA_TYPE, text.encode()) for text in merged.licenses if text]
    return [_put_bytes(store, kind, data, progress) for kind, data in items]


def _put_bytes(store: ModelStore, kind: str, data: bytes, progress: Progress) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _report(progress, digest, existed=store.blob_path(digest).is_file())
    return {"mediaType": kind, **store.write_blob_bytes(data)}


def _report(progress: Progress, digest: str, existed: bool) -> None:
    verb = "using existing" if existed else "creating new"
    progress({"status": f"{verb} layer {digest}"})


def import_gguf(store: ModelStore, source: Path, progress: Progress) -> dict[str, Any]:
    """Bring a GGUF file into the store as a blob: hard-linked to a `.partial` name in the
    blobs folder (copied where a link is impossible), hashed, then renamed into place."""
    make_private_dir(store.blobs)
    temporary = store.blobs / f".partial-create-{secrets.token_hex(8)}"
    try:
        digest = _link_or_copy(source, temporary, progress)
        blob = store.blob_path(digest)
        existed = blob.is_file()
        _report(progress, digest, existed)
        if not existed:
            os.replace(temporary, blob)
    finally:
        temporary.unlink(missing_ok=True)
    return {"mediaType": MODEL_MEDIA_TYPE, "digest": digest, "size": blob.stat().st_size}


def _link_or_copy(source: Path, temporary: Path, progress: Progress) -> str:
    """Hard-link (else copy) `source` to `temporary`; return the sha256 of what landed."""
    try:
        os.link(source, temporary)
    except OSError:
        with open(temporary, "xb", opener=private_opener) as target:
            digest = _hash(source, "copying model data", progress, target)
            target.flush()
            os.fsync(target.fileno())
        return digest
    return _hash(temporary, "reading model data", progress)


def _hash(path: Path, status: str, progress: Progress, copy_to: IO[bytes] | None = None) -> str:
    """sha256 of a file, copied to `copy_to` on the way; a big file reports its progress."""
    digest = hashlib.sha256()
    total, done = path.stat().st_size, 0
    shown = time.monotonic()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if copy_to is not None:
                copy_to.write(chunk)
            done += len(chunk)
            if time.monotonic() - shown >= PROGRESS_INTERVAL:
                shown = time.monotonic()
                progress({"status": status, "total": total, "completed": done})
    return "sha256:" + digest.hexdigest()


def _manifest_digests(path: Path) -> set[str]:
    """The digests a manifest file references (config and layers); none if unreadable."""
    try:
        manifest = json.loads(path.read_bytes())
        layers = [manifest["config"], *manifest["layers"]]
        return {str(layer["digest"]) for layer in layers}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _remove_orphans(store: ModelStore, digests: set[str]) -> None:
    """Remove the blobs among `digests` that no manifest references any more (a replaced
    model's old layers). Manifests being written (temporary files) count as references."""
    if not digests:
        return
    referenced: set[str] = set()
    for path in store.manifests.rglob("*"):
        if path.is_file():
            referenced |= _manifest_digests(path)
    for digest in digests - referenced:
        try:
            store.blob_path(digest).unlink(missing_ok=True)
        except (OSError, InvalidRequestError):
            continue


# --- reading a model back --------------------------------------------------------------------


def read_layers(
    store: ModelStore, entry: ModelEntry
) -> tuple[dict[str, Any], Modelfile, list[dict[str, Any]]]:
    """A model's layers: its model layer, its text layers as a Modelfile (no FROM), and any
    other layers. Unreadable text layers are skipped."""
    manifest = json.loads(store.manifest_path(entry.name).read_bytes())
    model_layer: dict[str, Any] = {}
    described = Modelfile()
    others = []
    for layer in manifest.get("layers", []):
        kind = layer.get("mediaType")
        if kind == MODEL_MEDIA_TYPE and not model_layer:
            model_layer = layer
        elif kind in TEXT_MEDIA_TYPES:
            _read_text_layer(store, layer, described)
        else:
            others.append(layer)
    return model_layer, described, others


def _read_text_layer(store: ModelStore, layer: dict[str, Any], into: Modelfile) -> None:
    kind = layer.get("mediaType")
    value: Any = None
    try:
        text = store.blob_path(str(layer.get("digest"))).read_text(errors="replace")
        if kind in (PARAMS_MEDIA_TYPE, MESSAGES_MEDIA_TYPE):
            value = json.loads(text)
    except (OSError, ValueError, InvalidRequestError):
        return
    if kind == TEMPLATE_MEDIA_TYPE:
        into.template = text
    elif kind == SYSTEM_MEDIA_TYPE:
        into.system = text
    elif kind == LICENSE_MEDIA_TYPE:
        into.licenses.append(text)
    elif kind == PARAMS_MEDIA_TYPE and isinstance(value, dict):
        into.parameters = value
    elif kind == MESSAGES_MEDIA_TYPE and isinstance(value, list):
        into.messages = [m for m in value if isinstance(m, dict)]


def describe(store: ModelStore, entry: ModelEntry) -> Modelfile:
    """The Modelfile that recreates `entry`: FROM its model blob, and its text layers."""
    _, described, _ = read_layers(store, entry)
    described.source = str(entry.model_path.absolute())
    described.parser = entry.config.get("parser")
    return described


def show_modelfile(store: ModelStore, entry: ModelEntry) -> str:
    """`show --modelfile`: Ollama's header comments, then the Modelfile of `entry`."""
    header = [
        '# Modelfile generated by "agentport show"',
        "# To build a new Modelfile based on this, replace FROM with:",
        f"# FROM {entry.name.display}",
        "",
    ]
    return "\n".join(header) + "\n" + to_modelfile(describe(store, entry))


# --- uploads ---------------------------------------------------------------------------------


async def receive_blob(
    store: ModelStore,
    digest: str,
    announced_size: int | None,
    chunks: AsyncIterator[bytes],
    margin: int,
) -> None:
    """Store the blob `digest` arriving as `chunks` (`POST /api/blobs/<digest>`): disk space is
    checked against `announced_size` (the Content-Length; None when the body is chunked) plus
    `margin` first, writes happen off the event loop in batches, a body past its announced
    size stops the upload, and the blob appears only whole and verified. On any failure (a
    disconnect included) the partial file is removed and the error re-raised."""
    writer = await asyncio.to_thread(BlobWriter, store, digest, announced_size, margin)
    try:
        pending: list[bytes] = []
        size = 0
        async for chunk in chunks:
            pending.append(chunk)
            size += len(chunk)
            if size >= UPLOAD_FLUSH_BYTES:
                await asyncio.to_thread(writer.write, b"".join(pending))
                pending, size = [], 0
        await asyncio.to_thread(writer.write, b"".join(pending))
        await asyncio.to_thread(writer.commit)
    except BaseException:
        writer.abort()
        raise


def parse_content_length(value: str | None) -> int | None:
    """The size a request announces in its Content-Length header, or None."""
    return int(value) if value is not None and value.strip().isdigit() else None
