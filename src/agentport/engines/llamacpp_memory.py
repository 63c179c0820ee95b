"""The buffer sizes llama.cpp reports while it loads a model and creates a context.

llama.cpp logs each buffer it allocates ("CPU_Mapped model buffer size = 92.10 MiB",
"CPU KV buffer size = 90.00 MiB", "CPU compute buffer size = 98.25 MiB", ...).
`capture_reported_memory` installs a log callback for the duration of a load, reads those
lines, and puts llama-cpp-python's own callback back afterwards; what that callback would have
printed (with verbose=True) is still passed on to it. llama.cpp has one log callback per
process, so captures are serialized.
"""

from __future__ import annotations

import ctypes
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

MIB = 1 << 20
_SIZE = r"buffer size\s*=\s*([0-9.]+) MiB"
# (pattern, field, whether repeated lines add up); compute and output buffers are re-reserved
# under the same name, model and KV buffers add up (an iSWA model has two KV caches).
_PATTERNS = (
    (re.compile(r"(\S+) model " + _SIZE), "weights", True),
    (re.compile(r"(\S+) (?:KV|RS) " + _SIZE), "kv", True),
    (re.compile(r"(\S+) compute " + _SIZE), "compute", False),
    (re.compile(r"(\S+)\s+output " + _SIZE), "output", False),
)
_lock = threading.Lock()


@dataclass(slots=True)
class ReportedMemory:
    """Bytes llama.cpp says it allocated, summed over its devices' buffers."""

    weights: int = 0
    kv: int = 0
    compute: int = 0
    output: int = 0  # the logits/embeddings buffer of the context (small)
    lines: list[str] = field(default_factory=list, repr=False)

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + self.output


class _Reader:
    """Turns log text (possibly in pieces) into ReportedMemory fields."""

    def __init__(self, reported: ReportedMemory) -> None:
        self.reported = reported
        self.pending = ""
        self.last: dict[tuple[str, str], int] = {}

    def feed(self, text: str) -> None:
        self.pending += text
        *complete, self.pending = self.pending.split("\n")
        for line in complete:
            self.line(line)

    def flush(self) -> None:
        if self.pending:
            self.line(self.pending)
            self.pending = ""

    def line(self, line: str) -> None:
        for pattern, name, adds_up in _PATTERNS:
            match = pattern.search(line)
            if match is None:
                continue
            size = int(float(match.group(2)) * MIB)
            if adds_up:
                setattr(self.reported, name, getattr(self.reported, name) + size)
            else:
                self.last[(name, match.group(1))] = size
                setattr(self.reported, name, self._latest(name))
            self.reported.lines.append(line.strip())
            return

    def _latest(self, name: str) -> int:
        return sum(size for (kind, _), size in self.last.items() if kind == name)


@contextmanager
def capture_reported_memory() -> Iterator[ReportedMemory]:
    """Collect what llama.cpp reports while the block loads a model and creates a context."""
    import llama_cpp

    reported = ReportedMemory()
    reader = _Reader(reported)
    previous = _library_callback()

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: Any) -> None:
        try:
            reader.feed(text.decode("utf-8", errors="replace"))
            if previous is not None:
                previous(level, text, user_data)
        except Exception:  # a log callback must never raise into C
            pass

    with _lock:
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        try:
            yield reported
        finally:
            reader.flush()
            _restore(llama_cpp, previous)


def _library_callback() -> Any:
    """llama-cpp-python's own callback (prints when verbose), or None."""
    try:
        from llama_cpp import _logger
    except ImportError:
        return None
    return getattr(_logger, "llama_log_callback", None)


def _restore(llama_cpp: Any, previous: Any) -> None:
    if previous is not None:
        llama_cpp.llama_log_set(previous, ctypes.c_void_p(0))
    else:
        llama_cpp.llama_log_set(ctypes.cast(None, llama_cpp.llama_log_callback), None)
