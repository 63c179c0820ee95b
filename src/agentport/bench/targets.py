"""Benchmark targets: what a `--target` names, and starting and stopping the servers it needs.

A target is written as

- `agentport` (or `agentport:DIALECT`): `python -m agentport serve` started here, with its own
  temporary home, on a free loopback port, one sequence, f16 KV and the benchmark's context and
  threads; driven in the OpenAI dialect unless another is named;
- `llama-server` (or `llama-server:DIALECT`): llama.cpp's own server, built by `llama_server`
  from the llama.cpp inside llama-cpp-python's source distribution, with the same model file,
  context, threads, one slot and flash attention on;
- `NAME=URL,DIALECT`: a server already running on 127.0.0.1 (Ollama, mlx_lm.server, vLLM, ...).

Every server started here is stopped again by `started`, even when a run fails, and gets a
clean environment: none of the developer's AGENTPORT_* variables, only what the scenario sets.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agentport.bench.drivers import DIALECTS, HttpDriver, loopback
from agentport.config import process_environment
from agentport.errors import ApiError, InvalidRequestError, LaunchError

LOOPBACK = "127.0.0.1"
STARTED = ("agentport", "llama-server")
REPO_ROOT = Path(__file__).resolve().parents[3]  # src/agentport/bench/ -> the checkout


@dataclass(frozen=True)
class TargetSpec:
    name: str
    kind: str  # "agentport", "llama-server" or "url"
    dialect: str
    url: str | None = None


@dataclass
class ServerOptions:
    """How started servers are configured: the same model, context and threads for all."""

    model_path: Path
    model_name: str = "smollm2:135m"
    threads: int = 2
    ctx: int = 8192
    n_ctx_train: int = 0  # > 0 and < ctx: llama-server gets the same YaRN stretch as ours
    parallel: int = 1  # sequences each server decodes at once (the concurrency scenario's slots)
    llama_bin: Path | None = None
    startup_timeout: float = 180.0
    workdir: Path = field(default_factory=Path.cwd)
    agentport_env: dict[str, str] = field(default_factory=dict)  # more AGENTPORT_* for ours
    llama_extra: tuple[str, ...] = ()  # more llama-server arguments


@dataclass
class Target:
    """A target ready to be driven: its spec, its driver and, if started here, its process."""

    spec: TargetSpec
    url: str
    driver: HttpDriver
    version: str = ""
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def log_tail(self, n_bytes: int = 2000) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return self.log_path.read_bytes()[-n_bytes:].decode("utf-8", "replace")


# ---------------------------------------------------------------------------- specs


def parse_target(text: str) -> TargetSpec:
    """A TargetSpec from `agentport[:dialect]`, `llama-server[:dialect]` or `name=url,dialect`."""
    text = text.strip()
    if "=" in text:
        name, _, rest = text.partition("=")
        url, _, dialect = rest.partition(",")
        loopback(url)
        return TargetSpec(name.strip(), "url", _dialect(dialect or "openai"), url.rstrip("/"))
    kind, _, dialect = text.partition(":")
    if kind not in STARTED:
        raise InvalidRequestError(
            f"unknown target {text!r}: agentport, llama-server or NAME=URL,DIALECT"
        )
    return TargetSpec(kind, kind, _dialect(dialect or "openai"))


def _dialect(text: str) -> str:
    text = text.strip().lower()
    if text not in DIALECTS:
        raise InvalidRequestError(f"unknown dialect {text!r}: one of {', '.join(DIALECTS)}")
    return text


def check_unique(specs: list[TargetSpec]) -> None:
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InvalidRequestError(f"target names must differ: {', '.join(names)}")


# ---------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _request(url: str, method: str, path: str, body: dict | None, timeout: float):
    """(status, body bytes) of one request, or None when nothing answers."""
    host, port = loopback(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body)
        headers = {} if body is None else {"content-type": "application/json"}
        conn.request(method, path, payload, headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def get_json(url: str, path: str, timeout: float = 2.0) -> dict | None:
    """The JSON answer of a GET, or None when nothing answers or it is not a 200 object."""
    answer = _request(url, "GET", path, None, timeout)
    try:
        data = json.loads(answer[1]) if answer and answer[0] == 200 else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def get_text(url: str, path: str, timeout: float = 5.0) -> str:
    """The body of a GET as text; empty when nothing answers or it is not a 200."""
    answer = _request(url, "GET", path, None, timeout)
    return answer[1].decode("utf-8", "replace") if answer and answer[0] == 200 else ""


def post_json(url: str, path: str, body: dict, timeout: float = 120.0) -> dict:
    """The JSON object a POST answers; ApiError for no answer, a non-2xx status or not JSON."""
    answer = _request(url, "POST", path, body, timeout)
    if answer is None or answer[0] // 100 != 2:
        status = "no answer" if answer is None else f"{answer[0]}: {answer[1][:300]!r}"
        raise ApiError(f"POST {url}{path} -> {status}")
    try:
        data = json.loads(answer[1])
    except ValueError as exc:
        raise ApiError(f"POST {url}{path} answered no JSON") from exc
    if not isinstance(data, dict):
        raise ApiError(f"POST {url}{path} answered no JSON object")
    return data


def server_version(url: str) -> str:
    """What a running server says its version is: Ollama-style, llama-server or vLLM."""
    for path, key in (
        ("/api/version", "version"),
        ("/props", "build_info"),
        ("/version", "version"),
    ):
        data = get_json(url, path)
        if data and data.get(key):
            return str(data[key])
    return ""


def _spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def stop_process(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group we started, SIGKILL it after ``grace`` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_ready(target: Target, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if target.process is not None and target.process.poll() is not None:
            raise LaunchError(f"{target.name} exited on start:\n{target.log_tail()}")
        if time.monotonic() > deadline:
            raise LaunchError(
                f"{target.name} not ready after {timeout:.0f} s:\n{target.log_tail()}"
            )
        time.sleep(0.25)


def clean_environment() -> dict[str, str]:
    """This process's environment without any AGENTPORT_* variable."""
    return {k: v for k, v in process_environment().items() if not k.startswith("AGENTPORT_")}


def agentport_environment(opts: ServerOptions, port: int, home: Path) -> dict[str, str]:
    """Ours' settings: loopback port, its own home, the benchmark's threads, context, KV type and
    model; `parallel` 0 leaves the sequence count to the memory plan."""
    env = clean_environment()
    env.update(
        AGENTPORT_HOST=f"{LOOPBACK}:{port}",
        AGENTPORT_HOME=str(home),
        AGENTPORT_THREADS=str(opts.threads),
        AGENTPORT_CONTEXT_LENGTH=str(opts.ctx),
        AGENTPORT_KV_TYPE="f16",
        AGENTPORT_DEFAULT_MODEL=opts.model_name,
    )
    if opts.parallel > 0:
        env["AGENTPORT_PARALLEL"] = str(opts.parallel)
    env.update({k: v for k, v in opts.agentport_env.items() if k.startswith("AGENTPORT_")})
    return env


def start_agentport(spec: TargetSpec, opts: ServerOptions) -> Target:
    """Ours, its home `<workdir>/<name>-home`: the same home again after a restart."""
    home = opts.workdir / f"{spec.name}-home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = agentport_environment(opts, port, home)
    url = f"http://{LOOPBACK}:{port}"
    log = home / "server.log"
    process = _spawn([sys.executable, "-m", "agentport", "serve"], env, log)
    from agentport import __version__

    driver = HttpDriver(url, spec.dialect, opts.model_name)
    return Target(spec, url, driver, f"agentport {__version__}", process, log)


def _agentport_ready(url: str) -> bool:
    return bool((get_json(url, "/api/ps") or {}).get("models"))


def llama_server_binary(given: Path | None) -> Path:
    """``given``, else the binary `llama_server` finds or builds in the user's cache."""
    if given is not None:
        if not given.is_file():
            raise LaunchError(f"no llama-server at {given}")
        return given
    from agentport.bench.llama_server import ensure_llama_server

    return ensure_llama_server()


def llama_args(opts: ServerOptions, port: int) -> list[str]:
    """llama-server's arguments: as many slots as ours, each with the same context (llama-server
    splits `-c` among its slots), threads, KV type and attention."""
    args = ["-m", str(opts.model_path), "--host", LOOPBACK, "--port", str(port)]
    slots = max(opts.parallel, 1)
    args += ["-c", str(opts.ctx * slots), "--parallel", str(slots)]
    args += ["-t", str(opts.threads)]
    args += ["-fa", "on", "-ctk", "f16", "-ctv", "f16"]
    if 0 < opts.n_ctx_train < opts.ctx:  # ours stretches the same way (planner.context)
        scale = opts.ctx / opts.n_ctx_train
        args += ["--rope-scaling", "yarn", "--rope-scale", f"{scale:g}"]
        args += ["--yarn-orig-ctx", str(opts.n_ctx_train)]
    return [*args, *opts.llama_extra]


def start_llama_server(spec: TargetSpec, opts: ServerOptions) -> Target:
    binary = llama_server_binary(opts.llama_bin)
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    log = opts.workdir / f"{spec.name}.log"
    process = _spawn([str(binary), *llama_args(opts, port)], clean_environment(), log)
    driver = HttpDriver(url, spec.dialect, opts.model_name)
    return Target(spec, url, driver, _binary_version(binary), process, log)


def _binary_version(binary: Path) -> str:
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout + done.stderr).strip().splitlines()
    return "llama-server " + " ".join(line for line in lines if line.startswith("version"))


def _llama_ready(url: str) -> bool:
    return get_json(url, "/health") is not None


def start(spec: TargetSpec, opts: ServerOptions) -> Target:
    """Start (or, for a URL, reach) a target and wait until it can take a request."""
    if spec.kind == "url":
        url = spec.url or ""
        target = Target(spec, url, HttpDriver(url, spec.dialect, opts.model_name))
        target.version = server_version(url)
        return target
    if spec.kind == "agentport":
        target, ready = start_agentport(spec, opts), _agentport_ready
    else:
        target, ready = start_llama_server(spec, opts), _llama_ready
    try:
        wait_ready(target, lambda: ready(target.url), opts.startup_timeout)
    except BaseException:
        stop_process(target.process)  # type: ignore[arg-type]
        raise
    return target


@contextlib.contextmanager
def started(specs: list[TargetSpec], opts: ServerOptions) -> Iterator[list[Target]]:
    """All targets up, in order; every server started here is stopped on the way out."""
    check_unique(specs)
    targets: list[Target] = []
    try:
        for spec in specs:
            targets.append(start(spec, opts))
        yield targets
    finally:
        for target in targets:
            if target.process is not None:
                stop_process(target.process)
