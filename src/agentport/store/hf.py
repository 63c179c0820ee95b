"""Pulling GGUF models from Hugging Face repositories: `hf.co/{owner}/{repo}[:quant]`.

The repository's files come from huggingface_hub's model info (with file sizes and the sha256 the
Hub publishes for LFS files); the GGUF for the requested quant is chosen by its file name. The file
is downloaded with huggingface_hub's HTTP downloader straight into the store's blobs folder as
`sha256-<hex>.partial`, resumed with `Range` after an interruption, checked against the published
sha256, renamed into place, and only then is a manifest with one model layer written. The chat
template and parameters stay inside the GGUF, where the engine reads them at run time.

Why not `hf_hub_download`: it keeps its own cache (a second copy of the weights, or a move out of
it), and it deletes a partial download when it fails, so an interrupted pull would start over.

Nothing is sent anywhere but `settings.hf_endpoint` (and the storage host it redirects a download
to, unless that is an internal address: `store/reach.py`); the user's saved Hugging Face token
goes only to the official endpoint. The disk must hold the file's announced size plus
`AGENTPORT_DISK_MARGIN` before a byte is written, and a file that grows past its announced size is
deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import build_hf_headers, httpx

from agentport import __version__
from agentport.config import PRIVATE_FILE_MODE, Settings, make_private_dir
from agentport.errors import InvalidRequestError, NotFoundError, UpstreamError
from agentport.planner.gguf_meta import format_params, read_shape
from agentport.store.models import MODEL_MEDIA_TYPE, ModelStore, ensure_free_space, file_sha256
from agentport.store.names import HF_DEFAULT_QUANT, ModelName
from agentport.store.reach import allowed_hosts, check_reachable

PROGRESS_INTERVAL = 0.25  # seconds between progress lines while bytes arrive
OFFICIAL_HOSTS = {"huggingface.co", "hf.co"}
_QUANT = re.compile(
    r"(?<![a-z0-9])((?:i|t)?q[1-8](?:_[a-z0-9]+)*|bf16|fp16|fp32|f16|f32|mxfp4(?:_moe)?)"
    r"(?![a-z0-9])",
    re.IGNORECASE,
)
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_LOCKS: dict[str, threading.Lock] = {}  # one download of a blob at a time in this process


# -- choosing the file ----------------------------------------------------------------------------


def quant_of(filename: str) -> str | None:
    """The quant a GGUF file name carries (`Model-Q4_K_M.gguf` -> `Q4_K_M`), upper case."""
    found = _QUANT.findall(filename.rsplit("/", 1)[-1])
    return found[-1].upper() if found else None


def is_split(filename: str) -> bool:
    return bool(_SPLIT.search(filename))


def choose_gguf(files: list[str], quant: str, repo: str) -> str:
    """The GGUF file for `quant` (case-insensitive) among a repository's files. A repository with
    one GGUF gives it for the default quant (or when its name carries none)."""
    candidates = [f for f in files if _is_model_gguf(f)]
    if not candidates:
        raise NotFoundError(f"no GGUF file in the Hugging Face repository {repo}")
    wanted = quant.upper()
    matches = [f for f in candidates if quant_of(f) == wanted]
    if not matches and _sole_candidate(candidates, quant):
        matches = candidates
    whole = sorted((f for f in matches if not is_split(f)), key=lambda f: (len(f), f))
    if whole:
        return whole[0]
    if matches:
        raise InvalidRequestError(
            f"{repo}:{quant} is split into several GGUF files ({sorted(matches)[0]}, ...); "
            "split GGUF files are not supported, choose a quant stored in one file",
            "model",
        )
    raise NotFoundError(
        f"no {wanted} GGUF file in {repo}; available quants: {', '.join(_available(candidates))}"
    )


def _sole_candidate(candidates: list[str], quant: str) -> bool:
    """One GGUF in one file, asked for by the default quant or carrying no quant in its name."""
    if len(candidates) != 1 or is_split(candidates[0]):
        return False
    return quant.lower() == HF_DEFAULT_QUANT or quant_of(candidates[0]) is None


def _is_model_gguf(filename: str) -> bool:
    base = filename.rsplit("/", 1)[-1].lower()
    return base.endswith(".gguf") and "mmproj" not in base  # vision projectors are not models


def _available(candidates: list[str]) -> list[str]:
    labels = set()
    for name in candidates:
        label = quant_of(name) or name.rsplit("/", 1)[-1]
        labels.add(f"{label} (split, not supported)" if is_split(name) else label)
    return sorted(labels)


# -- the repository -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HubFile:
    repo_id: str
    filename: str
    revision: str  # the commit the listing came from, so the download matches it
    size: int | None
    sha256: str | None  # hex, as the Hub publishes it for LFS files


def find_file(settings: Settings, name: ModelName) -> HubFile:
    """List the repository (with file sizes) and choose the GGUF for `name.tag`."""
    repo_id = f"{name.namespace}/{name.model}"
    api = HfApi(
        endpoint=_endpoint(settings),
        token=_token(settings),
        library_name="agentport",
        library_version=__version__,
    )
    with _hub_errors(name, settings):
        info = api.model_info(repo_id, files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings or []}
    filename = choose_gguf(list(siblings), name.tag, _display(name))
    sibling = siblings[filename]
    sha256 = sibling.lfs.sha256.lower() if sibling.lfs else None
    return HubFile(
        repo_id=repo_id,
        filename=filename,
        revision=info.sha or "main",
        size=sibling.size,
        sha256=sha256 if sha256 and _SHA256.match(sha256) else None,
    )


def _endpoint(settings: Settings) -> str:
    return settings.hf_endpoint.rstrip("/")


def _token(settings: Settings) -> bool | None:
    """None lets huggingface_hub use the user's saved token (gated repositories need it); False
    keeps it from any endpoint but the official one."""
    return None if urlsplit(settings.hf_endpoint).hostname in OFFICIAL_HOSTS else False


def _display(name: ModelName) -> str:
    return f"{name.host}/{name.namespace}/{name.model}"


@contextlib.contextmanager
def _hub_errors(name: ModelName, settings: Settings) -> Iterator[None]:
    """Map huggingface_hub's errors (and the network's) into ours, once, here."""
    repo, endpoint = _display(name), _endpoint(settings)
    try:
        yield
    except HFValidationError as exc:
        raise InvalidRequestError(f"{repo}: {_first_line(exc)}", "model") from exc
    except GatedRepoError as exc:
        raise NotFoundError(
            f"{repo} is gated: accept its terms on the Hub and log in with `hf auth login`"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise NotFoundError(f"Hugging Face repository {repo} not found at {endpoint}") from exc
    except (RevisionNotFoundError, RemoteEntryNotFoundError) as exc:
        raise NotFoundError(f"{repo}: {_first_line(exc)}") from exc
    except (HfHubHTTPError, httpx.HTTPError, OSError, ValueError) as exc:
        raise UpstreamError(f"pulling {repo} from {endpoint} failed: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# -- the download (in a worker thread) ------------------------------------------------------------


class _Stopped(Exception):
    """The pull was cancelled; the download thread stops between two chunks."""


class _Oversized(Exception):
    """More bytes arrived than the file's announced size."""


@dataclass
class _Transfer:
    """Shared by the download thread and the event loop."""

    total: int
    done: int = 0
    announced: int | None = None  # the size the Hub announced; no byte past it is taken
    verifying: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


class _Meter:
    """Stands in for huggingface_hub's progress bar: counts the bytes written into a _Transfer,
    and stops the download once the pull is cancelled."""

    def __init__(self, transfer: _Transfer, *, initial: int = 0, total: int | None = None, **_):
        self.transfer = transfer
        transfer.done = initial
        if total:
            transfer.total = total

    def __enter__(self) -> _Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int | float | None = 1) -> None:
        if self.transfer.stop.is_set():
            raise _Stopped
        self.transfer.done += int(n or 0)
        announced = self.transfer.announced
        if announced is not None and self.transfer.done > announced:
            raise _Oversized

    def close(self) -> None:
        return None


def _stored_intact(store: ModelStore, digest: str) -> bool:
    """The blob is stored and still matches its digest; a damaged one is removed."""
    path = store.blob_path(digest)
    if not path.is_file():
        return False
    if file_sha256(path) == digest:
        return True
    path.unlink(missing_ok=True)
    return False


def fetch_blob(
    store: ModelStore, settings: Settings, name: ModelName, file: HubFile, transfer: _Transfer
) -> str:
    """Download, verify and place the file as a blob; returns its digest. A blob already in the
    store is not downloaded again; a corrupt download is dropped and fetched once more."""
    partial = _partial_path(store, file)
    with _blob_lock(str(partial), transfer.stop), _hub_errors(name, settings):
        if file.sha256 and _stored_intact(store, "sha256:" + file.sha256):
            transfer.done = transfer.total = file.size or transfer.total
            return "sha256:" + file.sha256
        for attempt in (1, 2):
            _download_within_size(settings, file, partial, transfer)
            transfer.verifying = True
            digest = file_sha256(partial)
            if file.sha256 is None or digest == "sha256:" + file.sha256:
                break
            partial.unlink()
            transfer.verifying = False
            if attempt == 2:
                raise UpstreamError(f"{file.filename}: sha256 mismatch after download, twice")
        _place(store, partial, digest)
        return digest


def _partial_path(store: ModelStore, file: HubFile) -> Path:
    """Named by the published sha256, so an interrupted pull finds its bytes again."""
    if file.sha256:
        return store.blob_path("sha256:" + file.sha256).with_suffix(".partial")
    key = hashlib.sha256(f"{file.repo_id}/{file.revision}/{file.filename}".encode()).hexdigest()
    return store.blobs / f"hf-{key[:32]}.partial"


@contextlib.contextmanager
def _blob_lock(key: str, stop: threading.Event) -> Iterator[None]:
    lock = _LOCKS.setdefault(key, threading.Lock())
    while not lock.acquire(timeout=0.2):
        if stop.is_set():
            raise _Stopped
    try:
        yield
    finally:
        lock.release()


def _download_within_size(
    settings: Settings, file: HubFile, partial: Path, transfer: _Transfer
) -> None:
    """`_download`, deleting the partial file if it grows past the announced size."""
    try:
        _download(settings, file, partial, transfer)
    except _Oversized:
        partial.unlink(missing_ok=True)
        raise UpstreamError(
            f"{file.filename}: the server sent more than the {transfer.announced} bytes it "
            "announced; the download was deleted"
        ) from None


def _download(settings: Settings, file: HubFile, partial: Path, transfer: _Transfer) -> None:
    """Fetch the file's bytes into `partial`, going on from what it already holds, once the
    disk is known to have room for them."""
    url = hf_hub_url(
        file.repo_id, file.filename, revision=file.revision, endpoint=_endpoint(settings)
    )
    identity: dict[str, Any] = {"library_name": "agentport", "library_version": __version__}
    meta = get_hf_file_metadata(
        url, token=_token(settings), endpoint=_endpoint(settings), **identity
    )
    headers = build_hf_headers(token=_token(settings), **identity)
    if urlsplit(meta.location).netloc != urlsplit(url).netloc:
        headers.pop("authorization", None)  # a signed storage URL: the token stays on the Hub
    check_reachable(meta.location, allowed_hosts(settings))
    size = meta.size or file.size
    have = partial.stat().st_size if partial.is_file() else 0
    ensure_free_space(partial.parent, (size or 0) - min(have, size or 0), settings.disk_margin)
    resume = _prepare_partial(partial, size)
    transfer.total, transfer.done, transfer.announced = size or transfer.total, resume, size
    meter = functools.partial(_Meter, transfer)
    with partial.open("r+b") as handle:
        handle.seek(resume)
        http_get(
            meta.location,
            handle,
            resume_size=resume,
            headers=headers,
            expected_size=size,
            tqdm_class=meter,  # type: ignore[arg-type]
        )
        handle.flush()
        os.fsync(handle.fileno())


def _resumable(store: ModelStore, file: HubFile) -> int:
    """The bytes an interrupted pull of this file left behind."""
    partial = _partial_path(store, file)
    return partial.stat().st_size if partial.is_file() else 0


def _prepare_partial(partial: Path, size: int | None) -> int:
    """The bytes a previous attempt left (0 if none, or if they cannot belong to this file)."""
    make_private_dir(partial.parent)
    partial.touch(mode=PRIVATE_FILE_MODE)
    have = partial.stat().st_size
    if size is not None and have > size:
        os.truncate(partial, 0)
        return 0
    return have


def _place(store: ModelStore, partial: Path, digest: str) -> None:
    with partial.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        partial.unlink()
        raise InvalidRequestError("the file downloaded is not a GGUF model", "model")
    blob = store.blob_path(digest)
    if blob.is_file():
        partial.unlink()
    else:
        os.replace(partial, blob)


def model_config(settings: Settings, path: Path, file: HubFile) -> dict[str, Any]:
    """The config blob, from the GGUF's own metadata (also warms the engine's metadata cache)."""
    shape = read_shape(path, settings.metadata_cache)
    return {
        "model_format": "gguf",
        "model_family": shape.architecture,
        "model_families": [shape.architecture],
        "file_type": shape.quantization or quant_of(file.filename) or "",
        "parameter_size": format_params(shape.parameter_count) if shape.parameter_count else "",
    }


# -- the pull -------------------------------------------------------------------------------------


async def pull_hf(store: ModelStore, settings: Settings, name: ModelName) -> AsyncIterator[dict]:
    """Pull `hf.co/{owner}/{repo}:{quant}`, yielding Ollama's progress dicts. Raises an
    AgentportError on failure; closing the iterator midway stops the download and leaves a
    resumable `.partial` file and no model."""
    yield {"status": "pulling manifest"}
    file = await asyncio.to_thread(find_file, settings, name)
    transfer = _Transfer(total=file.size or 0, done=_resumable(store, file))
    task = asyncio.ensure_future(
        asyncio.to_thread(fetch_blob, store, settings, name, file, transfer)
    )
    try:
        async for progress in _progress(task, transfer, file):
            yield progress
    finally:
        await _stop(task, transfer)
    digest = task.result()
    path = store.blob_path(digest)
    config = await asyncio.to_thread(model_config, settings, path, file)
    yield {"status": "writing manifest"}
    layer = {"mediaType": MODEL_MEDIA_TYPE, "digest": digest, "size": path.stat().st_size}
    await asyncio.to_thread(store.write_manifest, name, config, [layer])
    yield {"status": "success"}


async def _progress(task: asyncio.Future, transfer: _Transfer, file: HubFile) -> AsyncIterator:
    """Progress lines while the download runs, then `verifying sha256 digest` once."""
    sent, verifying = transfer.done, False
    yield _pulling(file, transfer)
    while True:
        finished, _ = await asyncio.wait({task}, timeout=PROGRESS_INTERVAL)
        if finished and task.exception() is not None:
            return  # the caller raises it
        if transfer.done != sent and not verifying:
            sent = transfer.done
            yield _pulling(file, transfer)
        if (transfer.verifying or finished) and not verifying:
            verifying = True
            yield {"status": "verifying sha256 digest"}
        if finished:
            return


def _pulling(file: HubFile, transfer: _Transfer) -> dict[str, Any]:
    if file.sha256 is None:
        status = f"pulling {file.filename}"
        return {"status": status, "total": transfer.total, "completed": transfer.done}
    return {
        "status": f"pulling {file.sha256[:12]}",
        "digest": "sha256:" + file.sha256,
        "total": transfer.total,
        "completed": transfer.done,
    }


async def _stop(task: asyncio.Future, transfer: _Transfer) -> None:
    """If the pull ends early (cancelled, or its reader went away), stop the download thread and
    wait for it, so no file is being written once the pull is over."""
    if task.done():
        return
    transfer.stop.set()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: the pull is over, and the thread's end is not news
