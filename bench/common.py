"""Shared helpers for the bench scripts: stats, SSE reading, stream timing, servers, reports.

Owns the pure pieces (percentiles, SSE frame parsing, turning timed stream frames into a decode
rate, markdown rendering) and the small amount of I/O every benchmark needs (a free loopback
port, starting and stopping a server process, a streaming POST over loopback, CPU time used by
other processes during a measurement). Scripts in this directory import it as the sibling
module ``common``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from agentport.bench.metrics import percentile  # noqa: F401  (the scripts import it from here)
from agentport.bench.targets import free_port  # noqa: F401

LOOPBACK = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]  # the checkout
RESULTS_DIR = ROOT / "bench" / "results"
OURS, LLAMA = "ours", "llama-server"
SIDES = (OURS, LLAMA)
SEED = 1234

# ---------------------------------------------------------------------------- stats


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, p10, p90, min, max and count of a non-empty sample."""
    return {
        "n": len(values),
        "median": percentile(values, 50),
        "p10": percentile(values, 10),
        "p90": percentile(values, 90),
        "min": min(values),
        "max": max(values),
    }


# ---------------------------------------------------------------------------- SSE


@dataclass(frozen=True)
class SseFrame:
    """One server-sent event: its type (``message`` when unnamed) and raw data."""

    event: str
    data: str


def iter_sse(lines: Iterable[str]) -> Iterator[SseFrame]:
    """Parse SSE text lines (with or without line endings) into frames.

    Follows the SSE rules that matter here: ``event:`` names the frame, ``data:`` lines are
    joined with newlines, a blank line dispatches, ``:`` starts a comment, and a frame still
    open at the end of the stream is dispatched.
    """
    event, data = "", []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield SseFrame(event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield SseFrame(event or "message", "\n".join(data))


# ---------------------------------------------------------------------------- stream timing


@dataclass
class StreamStats:
    """What one streamed generation looked like from the client's side."""

    t_start: float
    t_first: float | None = None
    t_last: float | None = None
    deltas: int = 0
    reported_tokens: int | None = None
    server_tps: float | None = None
    text: list[str] = field(default_factory=list)

    def add_delta(self, t: float, text: str) -> None:
        """Record one content delta that arrived at time ``t``."""
        if not text:
            return
        if self.t_first is None:
            self.t_first = t
        self.t_last = t
        self.deltas += 1
        self.text.append(text)

    @property
    def tokens(self) -> int:
        """Output tokens: the server's own count when it gave one, else the delta count."""
        return self.reported_tokens if self.reported_tokens is not None else self.deltas

    @property
    def ttft(self) -> float | None:
        """Seconds from sending the request to the first content delta."""
        return None if self.t_first is None else self.t_first - self.t_start

    @property
    def decode_rate(self) -> float | None:
        """Tokens per second between the first and the last content delta.

        The first delta's token is produced before the clock starts, so ``tokens - 1`` tokens
        fall inside the interval. None when the interval is empty.
        """
        if self.t_first is None or self.t_last is None or self.t_last <= self.t_first:
            return None
        return (self.tokens - 1) / (self.t_last - self.t_first)


def anthropic_stream_stats(frames: Iterable[tuple[float, SseFrame]], t_start: float) -> StreamStats:
    """Fold timed Anthropic Messages SSE frames into stream stats.

    Counts ``text_delta`` content deltas and takes ``usage.output_tokens`` from
    ``message_delta``. An ``error`` frame raises RuntimeError.
    """
    stats = StreamStats(t_start=t_start)
    for t, frame in frames:
        if frame.event == "ping":
            continue
        payload = json.loads(frame.data)
        kind = payload.get("type", frame.event)
        if kind == "error":
            raise RuntimeError(f"server sent an error event: {frame.data}")
        if kind == "content_block_delta" and payload["delta"].get("type") == "text_delta":
            stats.add_delta(t, payload["delta"].get("text", ""))
        elif kind == "message_delta":
            usage = payload.get("usage") or {}
            if "output_tokens" in usage:
                stats.reported_tokens = int(usage["output_tokens"])
    return stats


def llama_completion_stream_stats(
    frames: Iterable[tuple[float, SseFrame]], t_start: float
) -> StreamStats:
    """Fold timed llama-server ``/completion`` SSE frames into stream stats.

    Each frame carries ``content``; the final one (``stop: true``) carries ``tokens_predicted``
    and the server's own ``timings.predicted_per_second``.
    """
    stats = StreamStats(t_start=t_start)
    for t, frame in frames:
        if frame.data == "[DONE]":
            continue
        payload = json.loads(frame.data)
        if "error" in payload:
            raise RuntimeError(f"server sent an error: {frame.data}")
        stats.add_delta(t, payload.get("content", ""))
        if payload.get("stop"):
            if "tokens_predicted" in payload:
                stats.reported_tokens = int(payload["tokens_predicted"])
            timings = payload.get("timings") or {}
            stats.server_tps = timings.get("predicted_per_second")
    return stats


# ---------------------------------------------------------------------------- HTTP


def split_loopback_url(url: str) -> tuple[str, int]:
    """Host and port of an http URL, refusing anything but a loopback host."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise ValueError(f"only http://loopback URLs are allowed, got {url!r}")
    return parts.hostname, parts.port or 80


def _get(base_url: str, path: str, timeout: float) -> tuple[int, bytes] | None:
    """(status, body) of a GET, or None when nothing answers."""
    host, port = split_loopback_url(base_url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError:
        return None
    finally:
        conn.close()


def http_get_status(base_url: str, path: str, timeout: float = 2.0) -> int | None:
    """Status code of a GET, or None when nothing answers."""
    answer = _get(base_url, path, timeout)
    return None if answer is None else answer[0]


def http_get_json(base_url: str, path: str, timeout: float = 2.0) -> dict | None:
    """The decoded JSON answer of a GET, or None when nothing answers or it is not a 200."""
    answer = _get(base_url, path, timeout)
    if answer is None or answer[0] != 200:
        return None
    try:
        return json.loads(answer[1])
    except ValueError:
        return None


def get_text(base_url: str, path: str, timeout: float = 5.0) -> str | None:
    """The body of a GET as text, or None when nothing answers or it is not a 200."""
    answer = _get(base_url, path, timeout)
    if answer is None or answer[0] != 200:
        return None
    return answer[1].decode("utf-8", "replace")


def http_post_json(base_url: str, path: str, body: dict, timeout: float = 60.0) -> dict:
    """POST a JSON body and return the decoded JSON answer; raise on a non-2xx status."""
    host, port = split_loopback_url(base_url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status // 100 != 2:
            raise RuntimeError(f"POST {path} -> {resp.status}: {raw[:500]!r}")
        return json.loads(raw)
    finally:
        conn.close()


def stream_sse(
    base_url: str, path: str, body: dict, headers: dict[str, str] | None = None, timeout=600.0
) -> Iterator[tuple[float, SseFrame]]:
    """POST a JSON body and yield (perf_counter time of arrival, frame) for each SSE frame."""
    host, port = split_loopback_url(base_url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        hdrs = {"content-type": "application/json", "accept": "text/event-stream"}
        conn.request("POST", path, json.dumps(body), hdrs | (headers or {}))
        resp = conn.getresponse()
        if resp.status // 100 != 2:
            raise RuntimeError(f"POST {path} -> {resp.status}: {resp.read()[:500]!r}")
        yield from _timed_frames(resp)
    finally:
        conn.close()


def _timed_frames(resp: http.client.HTTPResponse) -> Iterator[tuple[float, SseFrame]]:
    """Frames of a streaming response, each stamped when its dispatching line arrived."""
    stamp = [0.0]

    def lines() -> Iterator[str]:
        while raw := resp.readline():
            stamp[0] = time.perf_counter()
            yield raw.decode("utf-8")

    for frame in iter_sse(lines()):
        yield stamp[0], frame


# ---------------------------------------------------------------------------- servers


class ServerProcess:
    """A server started as a child process, its output sent to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None):
        self.name, self.argv, self.log_path = name, argv, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def log_tail(self, n_bytes: int = 3000) -> str:
        """The end of the server's log, for error messages."""
        self._log.flush()
        data = self.log_path.read_bytes()
        return data[-n_bytes:].decode("utf-8", "replace")

    def wait_ready(self, base_url: str, paths: Sequence[str], timeout: float) -> None:
        """Poll GET on ``paths`` until one answers 200; raise if the process dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if any(http_get_status(base_url, p) == 200 for p in paths):
                return
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``grace`` seconds."""
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        self._log.close()

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)


def wait_until(server: ServerProcess, ready: Callable[[], bool], timeout: float) -> None:
    """Poll ``ready``; stop the server and raise if it dies or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.name} not ready:\n{server.log_tail()}")
            time.sleep(0.25)
    except BaseException:
        server.stop()
        raise


# ---------------------------------------------------------------------------- CPU accounting


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far by the whole machine, the server processes and this client."""

    wall: float
    machine: float | None
    server: float | None
    client: float


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_seconds() -> float | None:
    """Non-idle CPU seconds of all CPUs since boot (Linux ``/proc/stat``), else None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _clock_ticks()


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process, all its threads (Linux ``/proc``), else None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text.rsplit(")", 1)[1].split()  # rest[0] is field 3 (state), so utime is rest[11]
    return (int(rest[11]) + int(rest[12])) / _clock_ticks()


def cpu_sample(server_pids: Sequence[int]) -> CpuSample:
    """A CPU sample now, for ``foreign_cpu_share`` over an interval; servers' times summed."""
    times = [process_cpu_seconds(pid) for pid in server_pids]
    server = None if None in times else sum(times)
    return CpuSample(time.perf_counter(), machine_busy_seconds(), server, time.process_time())


def foreign_cpu_share(before: CpuSample, after: CpuSample, cpus: int) -> float | None:
    """Share of the machine's CPU capacity over the interval that went to other processes.

    That is the machine's busy time less the server's and this client's, over wall time x
    ``cpus``; None where the machine or the server could not be read. A benchmark on a shared
    machine uses it to flag rounds that competed with someone else's work.
    """
    wall = after.wall - before.wall
    if None in (before.machine, after.machine, before.server, after.server) or wall <= 0:
        return None
    foreign = (after.machine - before.machine) - (after.server - before.server)
    foreign -= after.client - before.client
    return max(0.0, foreign) / (wall * cpus)


# ---------------------------------------------------------------------------- reports


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "" if value is None else str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub markdown table; floats are shown with two decimals, None as blank."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
