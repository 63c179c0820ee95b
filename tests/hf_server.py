"""A fake Hugging Face endpoint on 127.0.0.1 that huggingface_hub accepts when pointed at it.

It answers exactly what agentport's Hugging Face pull asks for:

    GET  /api/models/{owner}/{repo}[/revision/{rev}]   model info with `sha` and `siblings`
                                                       (size, and lfs.sha256 for model files)
    HEAD /{owner}/{repo}/resolve/{rev}/{filename}      ETag, X-Linked-Etag, X-Linked-Size,
    GET  /{owner}/{repo}/resolve/{rev}/{filename}      X-Repo-Commit, Content-Length; Range

with the Hub's error headers (`X-Error-Code: RepoNotFound`, `EntryNotFound`,
`RevisionNotFound`). Tests can cut a download midway (`cut_after`), make the downloads after it
fail (`fail_after_cut`, `broken`), slow them down (`chunk_delay`), and read back every request
(`requests`).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "3b1f7c0a9d2e4f6a8b0c1d2e3f4a5b6c7d8e9f01"
CHUNK = 1 << 20
_INFO = re.compile(r"^/api/models/([^/]+)/([^/]+)(?:/revision/([^/]+))?$")
_RESOLVE = re.compile(r"^/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")


@dataclass
class FakeFile:
    name: str
    data: bytes | None = None  # served from memory, or
    path: Path | None = None  # from a file on disk
    lfs: bool = True
    size: int = 0
    sha256: str = ""

    def __post_init__(self) -> None:
        if self.data is not None:
            self.size = len(self.data)
            self.sha256 = hashlib.sha256(self.data).hexdigest()
        elif self.path is not None:
            self.size = self.path.stat().st_size
            self.sha256 = _file_sha256(self.path)

    def read(self, start: int, end: int) -> bytes:
        if self.data is not None:
            return self.data[start:end]
        assert self.path is not None
        with self.path.open("rb") as handle:
            handle.seek(start)
            return handle.read(end - start)


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class FakeHub:
    repos: dict[str, list[FakeFile]]
    requests: list[Request] = field(default_factory=list)
    cut_after: int | None = None  # the next file GET sends this many bytes, then hangs up
    fail_after_cut: bool = False  # once it has hung up, file GETs answer 500 (`broken`)
    broken: bool = False  # file GETs answer 500
    chunk_delay: float = 0.0  # seconds slept per MiB served
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def file(self, repo: str, name: str) -> FakeFile:
        return next(f for f in self.repos[repo] if f.name == name)

    def gets(self, name: str) -> list[Request]:
        """The GET requests for a file's bytes."""
        return [r for r in self.requests if r.method == "GET" and r.path.endswith("/" + name)]

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def start_hub(repos: dict[str, list[FakeFile]]) -> FakeHub:
    hub = FakeHub(repos)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.hub = hub  # type: ignore[attr-defined]
    hub.server = server
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return hub


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def hub(self) -> FakeHub:
        return self.server.hub  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_HEAD(self) -> None:
        self._route(body=False)

    def do_GET(self) -> None:
        self._route(body=True)

    def _route(self, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        self.hub.requests.append(Request(self.command, path, self.headers.get("Range")))
        if match := _INFO.match(path):
            self._info(*match.groups())
        elif match := _RESOLVE.match(path):
            self._resolve(*match.groups(), body=body)
        else:
            self._error(404, "RepoNotFound")

    def _repo(self, owner: str, repo: str, revision: str | None) -> list[FakeFile] | None:
        files = self.hub.repos.get(f"{owner}/{repo}")
        if files is None:
            self._error(404, "RepoNotFound")
        elif revision not in (None, "main", COMMIT):
            self._error(404, "RevisionNotFound")
            return None
        return files

    def _info(self, owner: str, repo: str, revision: str | None) -> None:
        files = self._repo(owner, repo, revision)
        if files is None:
            return
        siblings = [_sibling(f) for f in files]
        info = {"id": f"{owner}/{repo}", "sha": COMMIT, "siblings": siblings, "private": False}
        self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})

    def _resolve(self, owner: str, repo: str, revision: str, name: str, body: bool) -> None:
        files = self._repo(owner, repo, revision)
        if files is None:
            return
        file = next((f for f in files if f.name == name), None)
        if file is None:
            self._error(404, "EntryNotFound")
        elif body and self.hub.broken:
            self._error(500, None)
        else:
            self._serve(file, body)

    def _serve(self, file: FakeFile, body: bool) -> None:
        start, end = _range(self.headers.get("Range"), file.size)
        headers = {
            "ETag": f'"{file.sha256}"',
            "X-Linked-Etag": f'"{file.sha256}"',
            "X-Linked-Size": str(file.size),
            "X-Repo-Commit": COMMIT,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Length": str(end - start),
        }
        status = 200
        if start > 0:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{file.size}"
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self._stream(file, start, end)

    def _stream(self, file: FakeFile, start: int, end: int) -> None:
        cut, self.hub.cut_after = self.hub.cut_after, None
        limit = end if cut is None else min(end, start + cut)
        position = start
        while position < limit:
            piece = file.read(position, min(position + CHUNK, limit))
            self.wfile.write(piece)
            position += len(piece)
            if self.hub.chunk_delay:
                time.sleep(self.hub.chunk_delay)
        if position < end:  # hang up midway, as a dropped connection does
            self.wfile.flush()
            self.close_connection = True
            self.hub.broken = self.hub.broken or self.hub.fail_after_cut

    def _error(self, status: int, code: str | None) -> None:
        headers = {"Content-Type": "application/json", "X-Repo-Commit": COMMIT}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": code or "server error"}).encode(), headers)

    def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _sibling(file: FakeFile) -> dict:
    sibling: dict = {"rfilename": file.name, "size": file.size, "blobId": file.sha256[:40]}
    if file.lfs:
        sibling["lfs"] = {"size": file.size, "sha256": file.sha256, "pointerSize": 134}
    return sibling


def _range(header: str | None, size: int) -> tuple[int, int]:
    match = re.match(r"^bytes=(\d+)-(\d*)$", header or "")
    if not match:
        return 0, size
    start = min(int(match.group(1)), size)
    end = int(match.group(2)) + 1 if match.group(2) else size
    return start, min(end, size)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tiny_gguf(file_type: int = 7) -> bytes:
    """A small but valid GGUF (one tensor), enough for metadata reading; it does not run."""
    import gguf
    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tiny.gguf"
        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_file_type(file_type)
        writer.add_name("tiny")
        writer.add_block_count(1)
        writer.add_context_length(128)
        writer.add_embedding_length(8)
        writer.add_head_count(2)
        writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()


SMOLLM_REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
SPLIT_REPO = "test-org/Split-Model-GGUF"


def default_repos(gguf_path: Path) -> dict[str, list[FakeFile]]:
    """SmolLM2 with the real embedded GGUF as Q4_1 (so a pulled model runs) and a tiny Q8_0; and a
    repository whose only quant is split into several files."""
    readme = FakeFile("README.md", data=b"# SmolLM2 135M Instruct GGUF\n", lfs=False)
    return {
        SMOLLM_REPO: [
            readme,
            FakeFile("SmolLM2-135M-Instruct-Q4_1.gguf", path=gguf_path),
            FakeFile("SmolLM2-135M-Instruct-Q8_0.gguf", data=tiny_gguf()),
        ],
        SPLIT_REPO: [
            readme,
            FakeFile("Split-Model-Q4_K_M-00001-of-00002.gguf", data=b"GGUF" + b"\0" * 60),
            FakeFile("Split-Model-Q4_K_M-00002-of-00002.gguf", data=b"\0" * 64),
        ],
    }
