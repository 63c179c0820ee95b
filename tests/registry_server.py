"""A local registry that speaks Ollama's protocol, for tests: a threaded `http.server` on
127.0.0.1, port 0.

    GET       /v2/<namespace>/<model>/manifests/<tag or digest>   (checks the Accept header)
    GET|HEAD  /v2/<namespace>/<model>/blobs/<digest>              (Range: 206 + Content-Range)

Models are built from the embedded GGUF plus a template layer and a params layer. The GGUF of
each test model has its `general.name` value rewritten (same length), so every model has its own
blob digest (none equal to the embedded model's, which the server already holds) and still loads.

Faults, for the tests of resuming and verifying: cut the connection after N bytes of a blob's
answer, serve a corrupt byte (once, or N times), pause an answer after N bytes until released.
Requests and bytes served are counted per blob.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import select
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agentport.store.embedded import packaged_gguf

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
MODEL_TYPE = "application/vnd.ollama.image.model"
TEMPLATE_TYPE = "application/vnd.ollama.image.template"
PARAMS_TYPE = "application/vnd.ollama.image.params"
CHUNK = 1 << 20
GO_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end -}}"
    "<|im_start|>assistant\n"
)
_PATH = re.compile(r"^/v2/([a-z0-9._-]+)/([a-z0-9._-]+)/(manifests|blobs)/([^/?]+)$")


@dataclass(frozen=True)
class Blob:
    """Bytes served by digest: held in memory, or a file with a few bytes patched."""

    digest: str
    size: int
    data: bytes | None = None
    path: Path | None = None
    patch_at: int = 0
    patch: bytes = b""

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        """The bytes [start, end) in chunks of at most CHUNK."""
        if self.data is not None:
            for offset in range(start, end, CHUNK):
                yield self.data[offset : min(end, offset + CHUNK)]
            return
        assert self.path is not None
        with self.path.open("rb") as handle:
            handle.seek(start)
            for offset in range(start, end, CHUNK):
                yield self._patched(offset, handle.read(min(CHUNK, end - offset)))

    def _patched(self, offset: int, data: bytes) -> bytes:
        lo = max(offset, self.patch_at)
        hi = min(offset + len(data), self.patch_at + len(self.patch))
        if lo >= hi:
            return data
        out = bytearray(data)
        out[lo - offset : hi - offset] = self.patch[lo - self.patch_at : hi - self.patch_at]
        return bytes(out)


def bytes_blob(data: bytes) -> Blob:
    return Blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data), data=data)


@functools.cache
def gguf_blob(label: str) -> Blob:
    """The embedded GGUF with `general.name` set to a text made from `label`."""
    path = packaged_gguf()
    assert path is not None, "the embedded model package is not installed"
    at, length = _general_name(path)
    patch = f"agentport test {label}".encode()[:length].ljust(length, b"_")
    blob = Blob("", path.stat().st_size, path=path, patch_at=at, patch=patch)
    digest = hashlib.sha256()
    for chunk in blob.chunks(0, blob.size):
        digest.update(chunk)
    return Blob("sha256:" + digest.hexdigest(), blob.size, path=path, patch_at=at, patch=patch)


def _general_name(path: Path) -> tuple[int, int]:
    """(offset, length) of the string value of `general.name` in a GGUF's header."""
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    key = b"general.name"
    at = head.index(len(key).to_bytes(8, "little") + key) + 8 + len(key)
    assert int.from_bytes(head[at : at + 4], "little") == 8, "general.name is not a string"
    length = int.from_bytes(head[at + 4 : at + 12], "little")
    return at + 12, length


@dataclass
class Pause:
    """An answer held after `after` bytes: `reached` is set when it waits, `release()` ends it,
    and `client_gone` is set if the client hangs up meanwhile."""

    after: int
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    client_gone: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


class LocalRegistry:
    """The registry. Use as a context manager (or `start()` / `close()`); `url` is its base."""

    def __init__(self, redirect_blobs: bool = False) -> None:
        self.redirect_blobs = redirect_blobs
        self.redirect_to: str | None = None  # another server's base URL for blob redirects
        self.manifests: dict[tuple[str, str, str], bytes] = {}
        self.blobs: dict[str, Blob] = {}
        self.requests: Counter[tuple[str, str]] = Counter()
        self.bytes_served: Counter[str] = Counter()
        self.ranges: dict[str, list[str]] = {}
        self._cuts: dict[str, int] = {}
        self._corrupt: Counter[str] = Counter()
        self._pauses: dict[str, Pause] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.registry = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def host(self) -> str:
        """`127.0.0.1:<port>`, for model names that carry the registry's host."""
        return self.url.removeprefix("http://")

    def start(self) -> LocalRegistry:
        self._thread.start()
        return self

    def close(self) -> None:
        for pause in list(self._pauses.values()):
            pause.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- content --------------------------------------------------------------------------

    def add_model(self, name: str, label: str) -> dict[str, Blob]:
        """Serve `namespace/model:tag` built from the embedded GGUF (its `general.name` made from
        `label`), a template and a params layer; returns the blobs by role."""
        blobs = {
            "model": gguf_blob(label),
            "template": bytes_blob(f"{{{{/* {label} */}}}}{GO_TEMPLATE}".encode()),
            "params": bytes_blob(json.dumps({"stop": ["<|im_end|>"]}).encode()),
        }
        types = {"model": MODEL_TYPE, "template": TEMPLATE_TYPE, "params": PARAMS_TYPE}
        config = bytes_blob(json.dumps({"model_format": "gguf", "model_family": "llama"}).encode())
        layers = [_layer(types[role], blob) for role, blob in blobs.items()]
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": _layer(CONFIG_TYPE, config),
            "layers": layers,
        }
        for blob in [*blobs.values(), config]:
            self.blobs[blob.digest] = blob
        self.add_manifest(name, json.dumps(manifest, indent=2).encode())
        return {**blobs, "config": config}

    def add_manifest(self, name: str, raw: bytes) -> str:
        """Serve `raw` as the manifest of `namespace/model:tag`; returns its digest."""
        path, _, tag = name.partition(":")
        namespace, _, model = path.partition("/")
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        self.manifests[(namespace, model, tag)] = raw
        self.manifests[(namespace, model, digest)] = raw
        return digest

    # --- faults and counters --------------------------------------------------------------

    def cut_after(self, digest: str, n_bytes: int) -> None:
        """The next answer for `digest` closes the connection after `n_bytes` of its body."""
        with self._lock:
            self._cuts[digest] = n_bytes

    def corrupt(self, digest: str, times: int = 1) -> None:
        """The next `times` answers for `digest` flip the byte in the middle of the blob."""
        with self._lock:
            self._corrupt[digest] = times

    def pause_after(self, digest: str, n_bytes: int) -> Pause:
        """The next answer for `digest` waits after `n_bytes` of its body until released."""
        pause = Pause(n_bytes)
        with self._lock:
            self._pauses[digest] = pause
        return pause

    def gets(self, digest: str) -> int:
        return self.requests[("GET", digest)]

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes_served.clear()
            self.ranges.clear()

    def _count(self, method: str, digest: str, range_header: str | None) -> None:
        with self._lock:
            self.requests[(method, digest)] += 1
            if range_header:
                self.ranges.setdefault(digest, []).append(range_header)

    def _served(self, digest: str, n_bytes: int) -> None:
        with self._lock:
            self.bytes_served[digest] += n_bytes

    def _faults(self, digest: str) -> tuple[int | None, bool, Pause | None]:
        """(cut after, corrupt, pause) for one answer; each fault is used up by it."""
        with self._lock:
            cut = self._cuts.pop(digest, None)
            corrupt = self._corrupt[digest] > 0
            if corrupt:
                self._corrupt[digest] -= 1
            return cut, corrupt, self._pauses.pop(digest, None)


def _layer(media_type: str, blob: Blob) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": blob.digest, "size": blob.size}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: LocalRegistry

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (the pulls under test cancel downloads) are not errors."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def registry(self) -> LocalRegistry:
        return self.server.registry

    def do_GET(self) -> None:
        self._dispatch(body=True)

    def do_HEAD(self) -> None:
        self._dispatch(body=False)

    def _dispatch(self, body: bool) -> None:
        if self.path.startswith("/cdn/"):
            self._blob(self.path.removeprefix("/cdn/"), body)
            return
        match = _PATH.match(self.path)
        if not match:
            self._error(404, "NAME_UNKNOWN", "no such route")
        elif match.group(3) == "manifests":
            self._manifest(match.group(1), match.group(2), match.group(4), body)
        elif self.registry.redirect_blobs and body:
            self._count(match.group(4))
            base = self.registry.redirect_to or self.registry.url
            self._reply(307, b"", {"Location": f"{base}/cdn/{match.group(4)}"})
        else:
            self._blob(match.group(4), body)

    def _manifest(self, namespace: str, model: str, reference: str, body: bool) -> None:
        accept = self.headers.get("Accept", "")
        if DOCKER_MANIFEST not in accept and OCI_MANIFEST not in accept:
            self._error(406, "MANIFEST_UNACCEPTABLE", f"no acceptable media type in {accept!r}")
            return
        raw = self.registry.manifests.get((namespace, model, reference))
        if raw is None:
            self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            return
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        headers = {"Content-Type": DOCKER_MANIFEST, "Docker-Content-Digest": digest}
        self._reply(200, raw if body else b"", headers, len(raw))

    def _count(self, digest: str) -> None:
        self.registry._count(self.command, digest, self.headers.get("Range"))

    def _blob(self, digest: str, body: bool) -> None:
        if not self.path.startswith("/cdn/"):
            self._count(digest)
        blob = self.registry.blobs.get(digest)
        if blob is None:
            self._error(404, "BLOB_UNKNOWN", "blob unknown")
            return
        wanted = _range(self.headers.get("Range"), blob.size)
        if wanted is not None and wanted[0] >= blob.size:
            self._reply(416, b"", {"Content-Range": f"bytes */{blob.size}"})
            return
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}
        start, end = wanted or (0, blob.size)
        if wanted is None:
            self._reply(200, b"", headers, blob.size)
        else:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{blob.size}"
            self._reply(206, b"", headers, end - start)
        if body:
            self._send_blob(blob, start, end)

    def _send_blob(self, blob: Blob, start: int, end: int) -> None:
        cut, corrupt, pause = self.registry._faults(blob.digest)
        sent = 0
        try:
            for chunk in blob.chunks(start, end):
                data = _flip(chunk, blob.size // 2 - start - sent) if corrupt else chunk
                if pause is not None and sent + len(data) >= pause.after:
                    self._write(blob, data[: pause.after - sent])
                    data, sent = data[pause.after - sent :], pause.after
                    if not self._hold(pause):
                        return
                    pause = None
                if cut is not None and sent + len(data) >= cut:
                    self._write(blob, data[: cut - sent])
                    self._hang_up()
                    return
                self._write(blob, data)
                sent += len(data)
        except OSError:  # the client went away
            self.close_connection = True

    def _hold(self, pause: Pause) -> bool:
        """Wait until released; False (and `client_gone` set) if the client hangs up first."""
        self.wfile.flush()
        pause.reached.set()
        while not pause.released.wait(0.05):
            readable, _, _ = select.select([self.connection], [], [], 0)
            if readable and not self.connection.recv(1, socket.MSG_PEEK):
                pause.client_gone.set()
                self.close_connection = True
                return False
        return True

    def _write(self, blob: Blob, data: bytes) -> None:
        if data:
            self.wfile.write(data)
            self.registry._served(blob.digest, len(data))

    def _hang_up(self) -> None:
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def _reply(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str],
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self._reply(status, body, {"Content-Type": "application/json"})


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of `Range: bytes=<first>-[<last>]`; None without a range."""
    if not header:
        return None
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", header.strip())
    assert match, f"unsupported range {header!r}"
    last = int(match.group(2)) if match.group(2) else size - 1
    return int(match.group(1)), min(last + 1, size)


def _flip(chunk: bytes, offset: int) -> bytes:
    """`chunk` with the byte at `offset` inverted, when `offset` falls inside it."""
    if not 0 <= offset < len(chunk):
        return chunk
    out = bytearray(chunk)
    out[offset] ^= 0xFF
    return bytes(out)
