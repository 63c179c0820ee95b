"""The planner's estimates against what llama.cpp itself reports when it loads the embedded
model: KV cache and total within 10% at 4096 and 32768 tokens, f16 and q8_0 KV (issue item 8).
The same loads check that `capture_reported_memory` hears llama.cpp through a quiet
(verbose=False) Llama."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentport.engines.llamacpp_memory import ReportedMemory, capture_reported_memory
from agentport.planner.estimate import estimate_memory
from agentport.planner.gguf_meta import ModelShape, read_shape

llama_cpp = pytest.importorskip("llama_cpp")

GGML_TYPES = {"f16": 1, "q8_0": 8}
CONFIGS = [(4096, "f16"), (4096, "q8_0"), (32768, "f16"), (32768, "q8_0")]
TOLERANCE = 0.10


@pytest.fixture(scope="module")
def reported(gguf: Path) -> dict[tuple[int, str], ReportedMemory]:
    """What llama.cpp reports for each configuration, loaded one after the other."""
    results = {}
    for n_ctx, kv_type in CONFIGS:
        with capture_reported_memory() as memory:
            llm = llama_cpp.Llama(
                model_path=str(gguf),
                n_ctx=n_ctx,
                n_batch=512,
                n_ubatch=512,
                flash_attn=True,
                type_k=GGML_TYPES[kv_type],
                type_v=GGML_TYPES[kv_type],
                verbose=False,
            )
        llm.close()
        results[(n_ctx, kv_type)] = memory
    return results


@pytest.fixture(scope="module")
def shape(gguf: Path) -> ModelShape:
    return read_shape(gguf)


def within(estimated: int, actual: int) -> bool:
    return abs(estimated - actual) <= TOLERANCE * actual


@pytest.mark.parametrize("n_ctx,kv_type", CONFIGS)
def test_estimate_matches_llama_cpp(shape, reported, n_ctx, kv_type):
    actual = reported[(n_ctx, kv_type)]
    assert actual.weights and actual.kv and actual.compute, actual.lines
    estimate = estimate_memory(shape, n_ctx, parallel=1, kv_type=kv_type)
    assert within(estimate.kv, actual.kv), (estimate, actual)
    assert within(estimate.total, actual.total), (estimate, actual)
    assert within(estimate.weights, actual.weights), (estimate, actual)


def test_kv_cache_grows_with_context_and_shrinks_with_q8_0(reported):
    assert reported[(32768, "f16")].kv == 8 * reported[(4096, "f16")].kv
    assert reported[(4096, "q8_0")].kv < reported[(4096, "f16")].kv * 0.6
