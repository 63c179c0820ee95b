"""The physical limit of decode: memory bandwidth over the bytes one token must read.

`copy_bandwidth` measures this machine's memory bandwidth with a copy benchmark (numpy, one
buffer per thread, several threads at once since numpy releases the GIL while copying; bytes
moved = read + written, the STREAM convention; the best of a few repetitions). Generating one
token reads every weight once plus the KV cache of the context so far, so

    decode bound (tokens/s) = bandwidth / (weights bytes + KV bytes per token x context tokens)

and each target's decode rate is reported as a fraction of that bound.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

MIB = 1 << 20
KV_BYTES_PER_VALUE = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


@dataclass(frozen=True)
class Bound:
    """The decode bound and how it was reached."""

    bandwidth_gbs: float  # GB/s (1e9 bytes), read + write
    weights_bytes: int
    kv_bytes_per_token: int
    context_tokens: int

    @property
    def bytes_per_token(self) -> int:
        return self.weights_bytes + self.kv_bytes_per_token * self.context_tokens

    @property
    def tokens_per_second(self) -> float:
        return self.bandwidth_gbs * 1e9 / self.bytes_per_token

    def fraction(self, rate: float | None) -> float | None:
        """A decode rate as a fraction of the bound."""
        return None if rate is None else rate / self.tokens_per_second

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "bytes_per_token": self.bytes_per_token,
            "tokens_per_second": self.tokens_per_second,
        }


def copy_bandwidth(mib: int = 256, threads: int = 1, repeats: int = 5) -> float:
    """Best copy bandwidth in GB/s over ``repeats``: ``threads`` copies of ``mib`` MiB each."""
    import numpy as np

    per_thread = max(1, mib // max(threads, 1)) * MIB // 8
    sources = [np.ones(per_thread, dtype=np.float64) for _ in range(threads)]
    targets = [np.empty_like(s) for s in sources]
    for dst, src in zip(targets, sources, strict=True):  # fault the pages in before timing
        np.copyto(dst, src)
    best = 0.0
    for _ in range(repeats):
        seconds = _timed_copies(np, sources, targets)
        moved = 2 * sum(s.nbytes for s in sources)
        best = max(best, moved / seconds / 1e9)
    return best


def _timed_copies(np, sources: list, targets: list) -> float:
    barrier = threading.Barrier(len(sources) + 1)

    def copy(i: int) -> None:
        barrier.wait()
        np.copyto(targets[i], sources[i])

    workers = [threading.Thread(target=copy, args=(i,)) for i in range(len(sources))]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start


@functools.lru_cache(maxsize=8)
def model_shape(model_path: Path):
    """The GGUF's ModelShape, remembered in agentport's metadata cache (parsing takes seconds)."""
    from agentport.config import Settings
    from agentport.planner.gguf_meta import read_shape

    return read_shape(model_path, Settings().metadata_cache)


def model_bytes(model_path: Path, kv_type: str = "f16") -> tuple[int, int]:
    """(weights bytes, KV bytes per token of context) of a GGUF, from its header alone."""
    shape = model_shape(model_path)
    return shape.weights, shape.kv_bytes_per_token(KV_BYTES_PER_VALUE[kv_type])


def decode_bound(bandwidth_gbs: float, model_path: Path, context_tokens: int) -> Bound:
    """The bound for a model decoding at ``context_tokens`` of context (f16 KV)."""
    weights, kv_per_token = model_bytes(model_path)
    return Bound(bandwidth_gbs, weights, kv_per_token, context_tokens)
