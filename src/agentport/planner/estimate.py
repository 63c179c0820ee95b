"""How much memory llama.cpp allocates for a model at a context: weights, KV cache, compute.

The formulas follow what llama.cpp (the version llama-cpp-python 0.3.36 vendors) allocates on
the CPU backend, checked against the buffer sizes it reports at load (see
`tests/integration/test_planner_accuracy.py`):

- weights: the tensors' bytes, mapped from the file as they are;
- KV cache: `cells x layers x kv_heads x (head_dim_k + head_dim_v) x bytes per value`, where
  llama.cpp rounds the context of each sequence up to 256 cells and keeps one stream of cells
  per sequence (`n_ctx x parallel` cells in all);
- compute: the scheduler's buffer is the peak of one graph for a full micro-batch of
  `n_ubatch` tokens. Two moments compete for that peak. At the output, the logits of every
  token (`n_vocab x n_ubatch` f32) live next to a few activations (`n_embd x n_ubatch` f32).
  In attention, without flash attention the scores of every head over the cache
  (`n_kv x n_ubatch x n_head` f32) and the mask (`n_kv x n_ubatch` f32) live together; with
  flash attention only the mask (f16) does. Plus the per-sequence output buffer (one row of
  logits per sequence).

Models with sliding-window layers are counted with a full cache on every layer: an upper bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentport.planner.gguf_meta import ModelShape

KV_BYTES_PER_VALUE = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
CONTEXT_PAD = 256  # llama.cpp pads each sequence's context to a multiple of this
F32, F16 = 4, 2
OUTPUT_ACTIVATIONS = 3  # n_embd-wide f32 rows per token alive next to the logits
ATTENTION_ACTIVATIONS = 3  # n_embd-wide f32 rows per token alive next to the scores
DEFAULT_VOCAB = 32000


@dataclass(slots=True, frozen=True)
class MemoryEstimate:
    weights: int
    kv: int
    compute: int

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute


def estimate_memory(
    shape: ModelShape,
    n_ctx: int,
    parallel: int = 1,
    kv_type: str = "f16",
    batch_size: int = 512,
    flash_attention: bool = True,
) -> MemoryEstimate:
    """Bytes for `shape` with `n_ctx` tokens of context per sequence and `parallel`
    sequences (llama.cpp's non-unified cache: `n_ctx x parallel` cells, one stream each)."""
    parallel = max(1, parallel)
    n_ctx_seq = padded_context(n_ctx)
    return MemoryEstimate(
        weights=shape.weights,
        kv=kv_bytes(shape, n_ctx_seq * parallel, kv_type),
        compute=compute_bytes(shape, n_ctx_seq, parallel, batch_size, flash_attention),
    )


def padded_context(n_ctx: int) -> int:
    return -(-max(1, n_ctx) // CONTEXT_PAD) * CONTEXT_PAD


def kv_bytes(shape: ModelShape, cells: int, kv_type: str = "f16") -> int:
    if kv_type not in KV_BYTES_PER_VALUE:
        raise ValueError(f"unknown KV cache type {kv_type!r}")
    return int(cells * shape.kv_values_per_token() * KV_BYTES_PER_VALUE[kv_type])


def compute_bytes(
    shape: ModelShape, n_ctx_seq: int, parallel: int, batch_size: int, flash_attention: bool
) -> int:
    """The scheduler's compute buffer plus the output buffer, for one micro-batch."""
    n_ubatch = max(1, min(batch_size, n_ctx_seq * parallel))
    n_vocab = shape.n_vocab or DEFAULT_VOCAB
    n_embd = shape.n_embd or shape.n_heads * shape.head_dim
    at_output = F32 * n_ubatch * (n_vocab + OUTPUT_ACTIVATIONS * n_embd)
    if flash_attention:
        scores = F16 * n_ctx_seq * n_ubatch
    else:
        scores = F32 * n_ctx_seq * n_ubatch * (shape.n_heads + 1)
    in_attention = scores + F32 * n_ubatch * (ATTENTION_ACTIVATIONS * n_embd + shape.n_ff)
    return max(at_output, in_attention) + F32 * n_vocab * parallel
