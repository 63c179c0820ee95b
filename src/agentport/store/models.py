"""The model store on disk, in the layout of Ollama's registry.

    <models>/blobs/sha256-<hex>                           content-addressed blobs
    <models>/manifests/<host>/<namespace>/<model>/<tag>   OCI-style manifests (JSON)

A manifest lists a config blob and layers (model, template, system, params, license) by digest.
Every write goes to a temporary file, is fsynced and renamed into place, so no reader ever sees a
half-written file. `BlobWriter` does that for a blob arriving in pieces, within the size it
announced and the disk space there is (`ensure_free_space`). Folders are created readable by
their owner only, and files too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentport.config import make_private_dir
from agentport.errors import InvalidRequestError, ModelNotFoundError, RequestTooLargeError
from agentport.store.names import ModelName, parse_name

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
TEMPLATE_MEDIA_TYPE = "application/vnd.ollama.image.template"
SYSTEM_MEDIA_TYPE = "application/vnd.ollama.image.system"
PARAMS_MEDIA_TYPE = "application/vnd.ollama.image.params"
MESSAGES_MEDIA_TYPE = "application/vnd.ollama.image.messages"
LICENSE_MEDIA_TYPE = "application/vnd.ollama.image.license"
TEXT_MEDIA_TYPES = (
    TEMPLATE_MEDIA_TYPE,
    SYSTEM_MEDIA_TYPE,
    PARAMS_MEDIA_TYPE,
    MESSAGES_MEDIA_TYPE,
    LICENSE_MEDIA_TYPE,
)
# Config and text layers are small; one past this is refused, from a registry or a client.
MAX_TEXT_LAYER_BYTES = 4 << 20
_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")


@dataclass(slots=True)
class ModelEntry:
    name: ModelName
    digest: str  # sha256:<hex> of the manifest
    size: int
    modified: float
    model_path: Path
    config: dict[str, Any]


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.manifests = root / "manifests"

    def blob_path(self, digest: str) -> Path:
        match = _DIGEST.match(digest)
        if not match:
            raise InvalidRequestError(f"invalid digest '{digest[:80]}'")
        return self.blobs / f"sha256-{match.group(1)}"

    def manifest_path(self, name: ModelName) -> Path:
        return self.manifests.joinpath(*name.parts)

    def list(self) -> list[ModelEntry]:
        entries = []
        if not self.manifests.is_dir():
            return entries
        for path in sorted(self.manifests.glob("*/*/*/*")):
            entry = self._entry(ModelName(*path.relative_to(self.manifests).parts), path)
            if entry is not None:
                entries.append(entry)
        return entries

    def names(self) -> list[str]:
        return [e.name.display for e in self.list()]

    def get(self, text: str) -> ModelEntry:
        name = parse_name(text)
        entry = self._entry(name, self.manifest_path(name))
        if entry is None:
            raise ModelNotFoundError(text, self.names())
        return entry

    def _entry(self, name: ModelName, path: Path) -> ModelEntry | None:
        try:
            raw = path.read_bytes()
            manifest = json.loads(raw)
            layers = manifest["layers"]
            model = next(x for x in layers if x["mediaType"] == MODEL_MEDIA_TYPE)
            model_path = self.blob_path(model["digest"])
            config = json.loads(self.blob_path(manifest["config"]["digest"]).read_bytes())
            if not model_path.is_file():
                return None
        except (OSError, ValueError, KeyError, StopIteration, InvalidRequestError):
            return None
        return ModelEntry(
            name=name,
            digest="sha256:" + hashlib.sha256(raw).hexdigest(),
            size=sum(int(x.get("size", 0)) for x in layers),
            modified=path.stat().st_mtime,
            model_path=model_path,
            config=config,
        )

    def text_layers(self, entry: ModelEntry) -> dict[str, str]:
        """The manifest's small text layers (template, system, params, messages, license) by
        media type; several license layers are joined."""
        out: dict[str, str] = {}
        try:
            manifest = json.loads(self.manifest_path(entry.name).read_bytes())
            for layer in manifest.get("layers", []):
                kind = layer.get("mediaType")
                if kind in TEXT_MEDIA_TYPES:
                    text = self.blob_path(layer["digest"]).read_text(errors="replace")
                    out[kind] = f"{out[kind]}\n\n{text}" if kind in out else text
        except (OSError, ValueError, KeyError, AttributeError, InvalidRequestError):
            return out
        return out

    def write_blob_bytes(self, data: bytes) -> dict[str, Any]:
        """Store a small text or config layer (at most `MAX_TEXT_LAYER_BYTES`)."""
        check_text_layer_size(len(data))
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            atomic_write(path, data)
        return {"digest": digest, "size": len(data)}

    def write_manifest(self, name: ModelName, config: dict[str, Any], layers: list[dict]) -> None:
        config_layer = self.write_blob_bytes(json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, **config_layer},
            "layers": layers,
        }
        atomic_write(self.manifest_path(name), json.dumps(manifest, indent=2).encode())

    def copy(self, source: str, destination: str) -> ModelName:
        """Give a model a second name: a new manifest pointing at the same blobs."""
        entry = self.get(source)
        target = parse_name(destination)
        raw = self.manifest_path(entry.name).read_bytes()
        atomic_write(self.manifest_path(target), raw)
        return target

    def delete(self, text: str) -> list[str]:
        """Remove a model's manifest, then each of its blobs that no other manifest references;
        returns the digests of the blobs removed."""
        name = parse_name(text)
        path = self.manifest_path(name)
        if not path.is_file():
            raise ModelNotFoundError(text, self.names())
        owned = self._blob_paths(path)
        path.unlink()
        self._remove_empty_dirs(path.parent)
        # Temporary manifests count too: a copy being written may reference these blobs.
        shared = set()
        for other in self.manifests.rglob("*"):
            if other.is_file():
                shared |= self._blob_paths(other)
        removed = []
        for blob in sorted(owned - shared):
            if blob.exists() or blob.is_symlink():
                blob.unlink()
                removed.append("sha256:" + blob.name.removeprefix("sha256-"))
        return removed

    def _blob_paths(self, manifest_path: Path) -> set[Path]:
        """The blobs a manifest references (its config and layers); none if it is unreadable."""
        try:
            manifest = json.loads(manifest_path.read_bytes())
            digests = [manifest["config"]["digest"]]
            digests += [layer["digest"] for layer in manifest["layers"]]
            return {self.blob_path(str(d)) for d in digests}
        except (OSError, ValueError, KeyError, TypeError, InvalidRequestError):
            return set()

    def _remove_empty_dirs(self, folder: Path) -> None:
        while folder != self.manifests and self.manifests in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent


def check_text_layer_size(size: int, what: str = "a text or config layer") -> None:
    if size > MAX_TEXT_LAYER_BYTES:
        raise InvalidRequestError(f"{what} of {size} bytes is larger than {MAX_TEXT_LAYER_BYTES}")


def ensure_free_space(folder: Path, needed: int, margin: int) -> None:
    """Refuse (`RequestTooLargeError`) to write `needed` bytes into `folder` unless its disk
    keeps `margin` bytes free afterwards."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if needed + margin > free:
        raise RequestTooLargeError(
            f"not enough disk space: {needed} bytes are needed and {margin} kept free "
            f"(AGENTPORT_DISK_MARGIN), but only {free} bytes are free"
        )


class BlobWriter:
    """A blob arriving in pieces: written to a `.partial-upload-` file in the blobs folder
    while hashed, never past its announced size (nor, unannounced, into the disk margin), and
    renamed into place only if its sha256 is the expected one. Any failure removes the file."""

    def __init__(
        self, store: ModelStore, digest: str, announced_size: int | None, margin: int
    ) -> None:
        self.path = store.blob_path(digest)
        self.expected = "sha256:" + self.path.name.removeprefix("sha256-")
        self.announced_size = announced_size
        self.margin = margin
        make_private_dir(store.blobs)
        ensure_free_space(store.blobs, announced_size or 0, margin)
        fd, name = tempfile.mkstemp(dir=store.blobs, prefix=".partial-upload-")
        self.temporary = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        """Append `data` (runs in a thread); past the announced size, or with the disk nearly
        full, the blob is removed and `RequestTooLargeError` raised."""
        if self.announced_size is not None and self.size + len(data) > self.announced_size:
            self.abort()
            raise RequestTooLargeError(
                f"the blob is larger than the {self.announced_size} bytes announced"
            )
        if self.announced_size is None:
            self._keep_margin(len(data))
        self._hash.update(data)
        self._file.write(data)
        self.size += len(data)

    def _keep_margin(self, size: int) -> None:
        try:
            ensure_free_space(self.temporary.parent, size, self.margin)
        except RequestTooLargeError:
            self.abort()
            raise

    def commit(self) -> None:
        """Check the size and digest, fsync and move the blob into place; else remove it."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        actual = "sha256:" + self._hash.hexdigest()
        if self.announced_size is not None and self.size != self.announced_size:
            self.abort()
            raise InvalidRequestError(
                f"the body has {self.size} bytes, not the {self.announced_size} announced"
            )
        if actual != self.expected:
            self.abort()
            raise InvalidRequestError(
                f"digest mismatch: the body's sha256 is {actual}, not {self.expected}", "digest"
            )
        os.replace(self.temporary, self.path)

    def abort(self) -> None:
        self._file.close()
        self.temporary.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: a temporary file (owner-only), fsynced, renamed."""
    make_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()
