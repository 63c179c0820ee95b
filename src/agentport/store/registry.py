"""Pulling a model from a registry that speaks Ollama's protocol (the OCI distribution API):
the manifest by tag, then its blobs by digest, then the manifest written last.

A blob is downloaded into `blobs/sha256-<hex>-partial`, which stays between runs: an interrupted
pull resumes with a `Range` request (the bytes already there are hashed first). The sha256 is
checked before the blob is renamed into place; a mismatch deletes the partial file and fetches it
once more from zero. Several blobs download at once, and two pulls of the same blob in one process
share one download. No digest reaches the filesystem unchecked (`ModelStore.blob_path` refuses
anything but `sha256:<64 hex>`), and the manifest is stored byte for byte as the registry sent it,
so its digest is the registry's.

Before any blob is written the disk must hold what the manifest announces (less what is already
there) plus `AGENTPORT_DISK_MARGIN`; a blob that grows past its announced size is deleted and the
pull fails; config and text layers larger than `MAX_TEXT_LAYER_BYTES` are refused with the
manifest. Every request, each redirect included, goes only where `store/reach.py` allows.

Progress is a stream of dicts in Ollama's format: `pulling manifest`, `pulling <12 hex>` with
`digest`, `total` and `completed` (a few times a second per blob), `verifying sha256 digest`,
`writing manifest`, `success`. Failures raise `AgentportError`s, never a backend exception.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agentport import __version__
from agentport.config import Settings, is_loopback_host, make_private_dir, private_opener
from agentport.errors import InternalError, InvalidRequestError, NotFoundError, UpstreamError
from agentport.store.models import (
    MODEL_MEDIA_TYPE,
    TEXT_MEDIA_TYPES,
    ModelStore,
    atomic_write,
    check_text_layer_size,
    ensure_free_space,
    file_sha256,
)
from agentport.store.names import DEFAULT_HOST, ModelName
from agentport.store.reach import allowed_hosts, guard_requests

log = logging.getLogger("agentport.store")

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"
MANIFEST_LIMIT = 4 * 1024 * 1024
PROGRESS_INTERVAL = 0.25  # seconds between progress events of one blob
TIMEOUT = httpx.Timeout(30.0, read=120.0)

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Blob:
    digest: str  # sha256:<64 hex>, checked
    size: int
    media_type: str

    @property
    def short(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]


@dataclass(frozen=True, slots=True)
class Remote:
    """Where a pull's blobs come from: their URLs by digest, and the internal hosts it may
    reach (those the settings name)."""

    urls: dict[str, str]
    allowed: frozenset[str]


@dataclass(frozen=True, slots=True)
class Manifest:
    raw: bytes  # as the registry sent it
    config: Blob
    layers: list[Blob]

    @property
    def blobs(self) -> list[Blob]:
        """Layers then config, each digest once."""
        unique = {blob.digest: blob for blob in reversed([*self.layers, self.config])}
        return list(reversed(unique.values()))


# --- the pull ------------------------------------------------------------------------------


async def pull_registry(
    store: ModelStore, settings: Settings, name: ModelName, *, insecure: bool = False
) -> AsyncIterator[Event]:
    """Pull `name` into `store`, yielding progress events; raises AgentportError on failure."""
    yield {"status": "pulling manifest"}
    base = registry_base(settings, name, insecure)
    allowed = allowed_hosts(settings)
    manifest = await fetch_manifest(base, name, store, allowed)
    await asyncio.to_thread(_ensure_room, store, manifest.blobs, settings.disk_margin)
    urls = {blob.digest: blob_url(base, name, blob.digest) for blob in manifest.blobs}
    remote = Remote(urls, allowed)
    async for event in pull_blobs(store, manifest.blobs, remote, settings.download_parallel):
        yield event
    yield {"status": "verifying sha256 digest"}
    for blob in manifest.blobs:
        if not store.blob_path(blob.digest).is_file():
            raise InternalError(f"blob {blob.short} vanished from the store during the pull")
    yield {"status": "writing manifest"}
    await asyncio.to_thread(atomic_write, store.manifest_path(name), manifest.raw)
    yield {"status": "success"}


def _ensure_room(store: ModelStore, blobs: list[Blob], margin: int) -> None:
    """The disk must hold the blobs not yet stored, less the bytes their partial files hold,
    and keep `margin` free."""
    needed = 0
    for blob in blobs:
        path = store.blob_path(blob.digest)
        if not path.is_file():
            partial = _partial_path(path)
            have = partial.stat().st_size if partial.is_file() else 0
            needed += max(blob.size - have, 0)
    ensure_free_space(store.blobs, needed, margin)


def _partial_path(path: Path) -> Path:
    return path.with_name(path.name + "-partial")


def _intact(path: Path, digest: str) -> bool:
    """A stored blob still matches its digest; a damaged one is removed so it is fetched again."""
    if file_sha256(path) == digest:
        return True
    log.warning("stored blob %s is damaged; fetching it again", digest[:19])
    path.unlink(missing_ok=True)
    return False


def registry_base(settings: Settings, name: ModelName, insecure: bool = False) -> str:
    """The registry's base URL: `settings.registry` for the default host, else the name's own
    host, over https (http for a loopback host, or when `insecure`)."""
    if name.host == DEFAULT_HOST:
        return settings.registry.rstrip("/")
    scheme = "http" if insecure or is_loopback(name.host) else "https"
    return f"{scheme}://{name.host}"


def manifest_url(base: str, name: ModelName) -> str:
    reference = name.digest or name.tag
    return f"{base}/v2/{name.namespace}/{name.model}/manifests/{reference}"


def blob_url(base: str, name: ModelName, digest: str) -> str:
    return f"{base}/v2/{name.namespace}/{name.model}/blobs/{digest}"


def is_loopback(host: str) -> bool:
    """Whether `host` (optionally `host:port`) names this machine."""
    return is_loopback_host(host.rsplit(":", 1)[0] if host.count(":") == 1 else host)


def progress(blob: Blob, completed: int) -> Event:
    return {
        "status": f"pulling {blob.short}",
        "digest": blob.digest,
        "total": blob.size,
        "completed": completed,
    }


def _client(url: str, allowed: frozenset[str]) -> httpx.AsyncClient:
    """An HTTP client for the registry at `url`; a loopback registry is never proxied, and
    every request (each redirect too) must pass `store/reach.py`'s check."""
    return httpx.AsyncClient(
        timeout=TIMEOUT,
        follow_redirects=True,
        headers={"User-Agent": f"agentport/{__version__}"},
        trust_env=not is_loopback(httpx.URL(url).netloc.decode()),
        event_hooks={"request": [guard_requests(allowed)]},
    )


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


# --- the manifest --------------------------------------------------------------------------


async def fetch_manifest(
    base: str, name: ModelName, store: ModelStore, allowed: frozenset[str]
) -> Manifest:
    url = manifest_url(base, name)
    try:
        async with (
            _client(url, allowed) as http,
            http.stream("GET", url, headers={"Accept": ACCEPT}) as response,
        ):
            status = response.status_code
            raw = await _read_capped(response, MANIFEST_LIMIT) if status == 200 else b""
    except httpx.HTTPError as exc:
        raise UpstreamError(f"cannot reach the registry at {base}: {_reason(exc)}") from exc
    if status == 404:
        raise NotFoundError(f"model '{name.display}' not found in the registry")
    if status in (401, 403):
        raise UpstreamError(f"the registry refused access to '{name.display}' (HTTP {status})")
    if status != 200:
        raise UpstreamError(f"the registry answered HTTP {status} for '{name.display}'")
    return parse_manifest(raw, name, store)


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > limit:
            raise InvalidRequestError(f"the registry's manifest is larger than {limit} bytes")
    return bytes(data)


def parse_manifest(raw: bytes, name: ModelName, store: ModelStore) -> Manifest:
    """Check a manifest as received: its shape, every digest (so no path can escape the store),
    a model layer, and the pinned digest of `name@sha256:...` if any."""

    def invalid(reason: str) -> InvalidRequestError:
        return InvalidRequestError(f"invalid manifest for '{name.display}': {reason}")

    if name.digest and "sha256:" + hashlib.sha256(raw).hexdigest() != name.digest:
        raise invalid(f"its digest is not {name.digest}")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid("not JSON") from exc
    if not isinstance(data, dict) or data.get("schemaVersion") != 2:
        raise invalid("not a schema version 2 image manifest")
    if data.get("mediaType", DOCKER_MANIFEST) not in (DOCKER_MANIFEST, OCI_MANIFEST):
        raise invalid(f"media type {str(data.get('mediaType'))[:80]} is not an image manifest")
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise invalid("no layers")
    config = _blob(data.get("config"), store, invalid)
    blobs = [_blob(layer, store, invalid) for layer in layers]
    _check_small_layers(config, blobs, invalid)
    if not any(blob.media_type == MODEL_MEDIA_TYPE for blob in blobs):
        raise invalid("no model layer")
    return Manifest(raw, config, blobs)


def _blob(item: Any, store: ModelStore, invalid: Callable[[str], InvalidRequestError]) -> Blob:
    if not isinstance(item, dict):
        raise invalid("a layer is not an object")
    digest, size, media_type = item.get("digest"), item.get("size"), item.get("mediaType")
    if not isinstance(digest, str):
        raise invalid("a layer has no digest")
    try:
        store.blob_path(digest)
    except InvalidRequestError as exc:
        raise invalid(exc.message) from exc
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise invalid(f"blob {digest} has no valid size")
    return Blob(digest, size, media_type if isinstance(media_type, str) else "")


def _check_small_layers(
    config: Blob, layers: list[Blob], invalid: Callable[[str], InvalidRequestError]
) -> None:
    """The config and every text layer must be small."""
    for blob in [config, *(layer for layer in layers if layer.media_type in TEXT_MEDIA_TYPES)]:
        try:
            check_text_layer_size(blob.size, f"layer {blob.short}")
        except InvalidRequestError as exc:
            raise invalid(exc.message) from exc


# --- blobs, in parallel --------------------------------------------------------------------

_FINISHED = object()


async def pull_blobs(
    store: ModelStore, blobs: list[Blob], remote: Remote, parallel: int
) -> AsyncIterator[Event]:
    """Download `blobs` (at most `parallel` at once), yielding their merged progress events.
    The first failure cancels the others (their partial files stay, to resume) and is raised."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    gate = asyncio.Semaphore(parallel)
    tasks = [
        asyncio.create_task(_run_blob(store, blob, remote, gate, queue.put_nowait))
        for blob in blobs
    ]
    remaining = len(tasks)
    try:
        while remaining:
            item = await queue.get()
            if item is _FINISHED:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _run_blob(
    store: ModelStore,
    blob: Blob,
    remote: Remote,
    gate: asyncio.Semaphore,
    emit: Callable[[Any], None],
) -> None:
    """Pull one blob, reporting progress, then `_FINISHED` or the exception, through `emit`."""
    try:
        async with gate:
            await _pull_blob(store, blob, remote, emit)
    except Exception as exc:
        emit(exc)
    else:
        emit(_FINISHED)


async def _pull_blob(
    store: ModelStore, blob: Blob, remote: Remote, emit: Callable[[Any], None]
) -> None:
    path = store.blob_path(blob.digest)
    if path.is_file() and await asyncio.to_thread(_intact, path, blob.digest):
        emit(progress(blob, blob.size))
        return
    download = _join(path, blob, remote)
    try:
        await _watch(download, blob, emit)
    finally:
        _leave(download)


async def _watch(download: _Download, blob: Blob, emit: Callable[[Any], None]) -> None:
    """Report the shared download's progress until it ends; re-raise its failure."""
    while True:
        emit(progress(blob, download.completed))
        done, _ = await asyncio.wait({download.task}, timeout=PROGRESS_INTERVAL)
        if done:
            break
    task = download.task
    if not task.cancelled() and task.exception() is None:
        emit(progress(blob, blob.size))
        return
    emit(progress(blob, download.completed))  # where it stopped
    if task.cancelled():
        raise InternalError(f"the download of blob {blob.short} was cancelled")
    task.result()  # raises the download's error


# --- one download per blob, shared by the pulls that want it ------------------------------


class _Download:
    """A blob's download in progress: the task, the bytes it has, and the pulls waiting on it.
    When the last waiting pull goes away (its client disconnected), the download is cancelled."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None]
        self.completed = 0
        self.waiters = 0
        self.abandoned = False


# In-flight downloads of this process, by blob path: two pulls of one blob share a download.
_DOWNLOADS: dict[Path, _Download] = {}


def _join(path: Path, blob: Blob, remote: Remote) -> _Download:
    current = _DOWNLOADS.get(path)
    if current is None or current.abandoned:
        previous = current.task if current else None
        current = _Download()
        current.task = asyncio.create_task(_download(path, blob, remote, current, previous))
        current.task.add_done_callback(lambda _: _forget(path, current))
        _DOWNLOADS[path] = current
    current.waiters += 1
    return current


def _leave(download: _Download) -> None:
    download.waiters -= 1
    if download.waiters == 0 and not download.task.done():
        download.abandoned = True
        download.task.cancel()


def _forget(path: Path, download: _Download) -> None:
    if _DOWNLOADS.get(path) is download:
        del _DOWNLOADS[path]


async def _download(
    path: Path, blob: Blob, remote: Remote, state: _Download, previous: asyncio.Task[None] | None
) -> None:
    """Download `blob` to `path` through its partial file: resume, verify, rename into place;
    after a sha256 mismatch start again from zero, once."""
    if previous is not None:  # an abandoned download of this blob still closing its file
        await asyncio.wait({previous})
    partial = Partial(_partial_path(path))
    url = remote.urls[blob.digest]
    async with _client(url, remote.allowed) as http:
        for attempt in (1, 2):
            await asyncio.to_thread(partial.load, blob.size)
            state.completed = partial.size
            if partial.size < blob.size:
                await _fetch(http, url, blob, partial, state)
            if partial.size == blob.size and partial.digest() == blob.digest:
                await asyncio.to_thread(partial.commit, path)
                return
            log.warning("blob %s failed its sha256 check (attempt %d)", blob.short, attempt)
            partial.reset()
    raise UpstreamError(
        f"blob {blob.short} failed its sha256 check twice: the registry sends corrupt data"
    )


async def _fetch(
    http: httpx.AsyncClient, url: str, blob: Blob, partial: Partial, state: _Download
) -> None:
    """Append the rest of the blob to the partial file, asking for a range when resuming."""
    headers = {"Accept-Encoding": "identity"}
    if partial.size:
        headers["Range"] = f"bytes={partial.size}-"
    try:
        async with http.stream("GET", url, headers=headers) as response:
            _check_blob_answer(response, blob, partial)
            with open(partial.path, "ab", opener=private_opener) as handle:
                async for chunk in response.aiter_bytes():
                    if partial.size + len(chunk) > blob.size:
                        partial.reset()
                        raise UpstreamError(
                            f"the registry sent more than the {blob.size} bytes the manifest "
                            f"announces for blob {blob.short}; the download was deleted"
                        )
                    partial.append(handle, chunk)
                    state.completed = partial.size
    except httpx.HTTPError as exc:
        raise UpstreamError(
            f"the download of blob {blob.short} was interrupted at {partial.size} of "
            f"{blob.size} bytes ({_reason(exc)}); pull again to resume"
        ) from exc
    except OSError as exc:
        raise InternalError(f"cannot write blob {blob.short}: {exc}") from exc


def _check_blob_answer(response: httpx.Response, blob: Blob, partial: Partial) -> None:
    status = response.status_code
    if status == 200 and partial.size:  # the registry ignored the range: start from zero
        partial.reset()
    elif status == 206:
        start = _range_start(response.headers.get("content-range", ""))
        if start != partial.size:
            partial.reset()
            raise UpstreamError(f"the registry sent the wrong range of blob {blob.short}")
    elif status == 404:
        raise NotFoundError(f"blob {blob.digest} not found in the registry")
    elif status != 200:
        if status == 416:
            partial.reset()
        raise UpstreamError(f"the registry answered HTTP {status} for blob {blob.short}")


def _range_start(content_range: str) -> int | None:
    """The first byte of `Content-Range: bytes <start>-<end>/<total>`."""
    unit, _, rest = content_range.partition(" ")
    start = rest.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


class Partial:
    """The partial file of a blob being downloaded, and the sha256 of the bytes it holds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self._hash = hashlib.sha256()

    def load(self, limit: int) -> None:
        """Hash what a previous run left (runs in a thread); drop it if larger than `limit`."""
        self._hash, self.size = hashlib.sha256(), 0
        make_private_dir(self.path.parent)
        try:
            if self.path.stat().st_size > limit:
                self.path.unlink()
                return
            with self.path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    self._hash.update(chunk)
                    self.size += len(chunk)
        except FileNotFoundError:
            return

    def append(self, handle: Any, chunk: bytes) -> None:
        handle.write(chunk)
        handle.flush()  # the partial file always holds every byte received so far
        self._hash.update(chunk)
        self.size += len(chunk)

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)
        self._hash, self.size = hashlib.sha256(), 0

    def commit(self, path: Path) -> None:
        """fsync the verified file and rename it into place (runs in a thread)."""
        with self.path.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.path, path)
