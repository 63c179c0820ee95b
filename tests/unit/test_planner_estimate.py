"""Planner math: GGUF shapes, the KV cache, compute and weights estimates (table-driven), and
the parsing of the buffer sizes llama.cpp reports."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from agentport.engines.llamacpp_memory import ReportedMemory, capture_reported_memory
from agentport.planner.context import plan_context, rope_scaling_text, yarn_factor
from agentport.planner.estimate import (
    KV_BYTES_PER_VALUE,
    MemoryEstimate,
    estimate_memory,
    padded_context,
)
from agentport.planner.gguf_meta import SCHEMA, ModelShape, read_shape, shape_from_dict

MIB = 1 << 20

# The embedded model, SmolLM2-135M (Q4_1): what read_shape finds in its GGUF.
SMOLLM2 = ModelShape(
    "llama",
    30,
    9,
    3,
    64,
    8192,
    98_362_432,
    n_embd=576,
    n_vocab=49152,
    n_ff=1536,
    weights_bytes=96_576_768,
    parameter_count=134_515_008,
)


def test_kv_constants():
    assert KV_BYTES_PER_VALUE == {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


@pytest.mark.parametrize(
    "n_ctx,parallel,kv_type,kv_mib",
    [
        # the sizes llama.cpp reports for the embedded model ("CPU KV buffer size = ...")
        (4096, 1, "f16", 90.0),
        (32768, 1, "f16", 720.0),
        (4096, 1, "q8_0", 47.8125),
        (32768, 1, "q8_0", 382.5),
        (4096, 1, "q4_0", 25.3125),
        (4096, 4, "f16", 360.0),
        (32768, 4, "q8_0", 1530.0),
        (5000, 1, "f16", 112.5),  # padded to 5120 cells
    ],
)
def test_kv_cache(n_ctx, parallel, kv_type, kv_mib):
    estimate = estimate_memory(SMOLLM2, n_ctx, parallel=parallel, kv_type=kv_type)
    assert estimate.kv == pytest.approx(kv_mib * MIB, abs=1)


@pytest.mark.parametrize(
    "n_ctx,parallel,batch,flash,compute_mib",
    [
        # llama.cpp's "compute buffer size" plus its "output buffer size", same model
        (4096, 1, 512, True, 98.25 + 0.1875),
        (32768, 1, 512, True, 98.25 + 0.1875),
        (4096, 1, 256, True, 49.125 + 0.1875),
        (8192, 1, 512, False, 166.375 + 0.1875),
        (32768, 1, 512, False, 646.375 + 0.1875),
        (32768, 1, 256, False, 323.1875 + 0.1875),
        (5000, 1, 512, False, 106.375 + 0.1875),
        (32768, 4, 256, True, 49.6875 + 0.75),
        (4096, 4, 512, True, 98.25 + 0.75),
    ],
)
def test_compute_within_two_percent_of_llama_cpp(n_ctx, parallel, batch, flash, compute_mib):
    estimate = estimate_memory(
        SMOLLM2, n_ctx, parallel=parallel, batch_size=batch, flash_attention=flash
    )
    assert estimate.compute == pytest.approx(compute_mib * MIB, rel=0.02)


def test_weights_are_the_tensor_bytes_and_total_adds_up():
    estimate = estimate_memory(SMOLLM2, 4096)
    assert estimate.weights == SMOLLM2.weights_bytes
    assert estimate.total == estimate.weights + estimate.kv + estimate.compute
    assert MemoryEstimate(1, 2, 3).total == 6


def test_without_flash_attention_the_scores_grow_with_the_context():
    short = estimate_memory(SMOLLM2, 8192, flash_attention=False).compute
    long = estimate_memory(SMOLLM2, 16384, flash_attention=False).compute
    assert long - short == 8192 * 512 * (9 + 1) * 4


def test_old_shapes_fall_back_to_file_size_and_default_widths():
    old = ModelShape("llama", 30, 9, 3, 64, 8192, 98_000_000)
    estimate = estimate_memory(old, 4096)
    assert estimate.weights == 98_000_000
    assert estimate.kv == 90 * MIB
    assert estimate.compute > 0


def test_different_k_and_v_head_sizes():
    shape = ModelShape("x", 2, 4, 2, 192, 4096, 0, head_dim_v=128)
    assert shape.kv_values_per_token() == 2 * 2 * (192 + 128)
    assert estimate_memory(shape, 256).kv == 256 * 2 * 2 * 320 * 2


def test_unknown_kv_type():
    with pytest.raises(ValueError):
        estimate_memory(SMOLLM2, 4096, kv_type="q5_1")


@pytest.mark.parametrize("n_ctx,padded", [(1, 256), (256, 256), (257, 512), (32768, 32768)])
def test_padded_context(n_ctx, padded):
    assert padded_context(n_ctx) == padded


@pytest.mark.parametrize(
    "n_ctx,has_scaling,factor,text",
    [
        (32768, False, 4.0, "yarn x4 from 8192"),
        (8192, False, 1.0, None),
        (4096, False, 1.0, None),
        (32768, True, 1.0, None),
    ],
)
def test_yarn_factor(n_ctx, has_scaling, factor, text):
    shape = ModelShape("llama", 30, 9, 3, 64, 8192, 0, has_rope_scaling=has_scaling)
    assert yarn_factor(shape, n_ctx) == factor
    assert rope_scaling_text(factor, 8192) == text


def test_plan_context_still_caps_by_memory():
    plan = plan_context(SMOLLM2, 32768, 600 << 20)
    assert plan.capped_by_memory and plan.n_ctx < 32768
    assert plan.rope_scaling == f"yarn x{plan.n_ctx / 8192:g} from 8192"


# --- GGUF shapes -----------------------------------------------------------------------------


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    """A GGUF with per-layer KV heads (one layer without attention) and distinct V heads."""
    path = tmp_path / "tiny.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(3)
    writer.add_context_length(2048)
    writer.add_embedding_length(16)
    writer.add_feed_forward_length(64)
    writer.add_head_count(4)
    writer.add_head_count_kv([2, 0, 2])
    writer.add_key_length(8)
    writer.add_value_length(4)
    writer.add_file_type(1)
    writer.add_tensor("token_embd.weight", np.ones((100, 16), dtype=np.float16))
    writer.add_tensor("output_norm.weight", np.ones((16,), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_read_shape(tiny_gguf: Path):
    shape = read_shape(tiny_gguf)
    assert (shape.n_layers, shape.n_heads, shape.n_kv_heads) == (3, 4, 2)
    assert (shape.head_dim, shape.head_dim_v, shape.value_dim) == (8, 4, 4)
    assert (shape.n_embd, shape.n_ff, shape.n_vocab, shape.n_ctx_train) == (16, 64, 100, 2048)
    assert shape.kv_heads == 4  # 2 + 0 + 2
    assert shape.kv_values_per_token() == 4 * (8 + 4)
    assert shape.parameter_count == 100 * 16 + 16
    assert shape.weights_bytes == 100 * 16 * 2 + 16 * 4
    assert shape.quantization == "F16"


def test_shape_cache_is_versioned(tiny_gguf: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = cache / f"{tiny_gguf.name}-{tiny_gguf.stat().st_size}.json"
    stale.write_text(json.dumps({"architecture": "llama", "n_layers": 1}))  # an old schema
    shape = read_shape(tiny_gguf, cache)
    assert shape.n_layers == 3
    fresh = cache / f"{tiny_gguf.name}-{tiny_gguf.stat().st_size}.v{SCHEMA}.json"
    assert json.loads(fresh.read_text())["n_vocab"] == 100
    assert read_shape(tiny_gguf, cache) == shape


def test_broken_cache_entry_is_reread(tiny_gguf: Path, tmp_path: Path):
    cached = tmp_path / f"{tiny_gguf.name}-{tiny_gguf.stat().st_size}.v{SCHEMA}.json"
    cached.write_text('{"nonsense": 1}')
    assert read_shape(tiny_gguf, tmp_path).n_layers == 3


def test_shape_from_dict_ignores_unknown_keys():
    shape = shape_from_dict(
        {"architecture": "qwen2", "n_layers": 28, "n_heads": 28, "n_kv_heads": 4,
         "head_dim": 128, "n_ctx_train": 32768, "file_size": 1, "tag": "qwen2.5-coder:7b"}
    )  # fmt: skip
    assert shape.n_kv_heads == 4


# --- what llama.cpp reports ------------------------------------------------------------------

LOG = [
    "load_tensors:   CPU_Mapped model buffer size =    92.10 MiB\n",
    "llama_context:        CPU  output buffer size =     0.19 MiB\n",
    "llama_kv_cache:        CPU KV buffer size =    ",  # a line in two pieces
    "90.00 MiB\n",
    "llama_kv_cache: size =   90.00 MiB (  4096 cells,  30 layers,  1/1 seqs), K (f16): ...\n",
    "sched_reserve:        CPU compute buffer size =    98.25 MiB\n",
    "sched_reserve:        CPU compute buffer size =    97.00 MiB\n",  # re-reserved: the last
    "~llama_context:        CPU compute buffer size is  98.2520 MiB, matches expectation\n",
]


class FakeLlamaCpp(types.ModuleType):
    """Enough of llama_cpp for the capture: a log setter and the callback type."""

    def __init__(self) -> None:
        super().__init__("llama_cpp")
        self.installed: list = []

        def callback_type(function):
            return function

        self.llama_log_callback = callback_type
        self._logger = types.SimpleNamespace(llama_log_callback=self.library_callback)

    def library_callback(self, level, text, user_data):
        self.forwarded = getattr(self, "forwarded", 0) + 1

    def llama_log_set(self, callback, user_data):
        self.installed.append(callback)

    def log(self, text: str) -> None:
        self.installed[-1](1, text.encode(), None)


@pytest.fixture
def fake_llama(monkeypatch: pytest.MonkeyPatch) -> FakeLlamaCpp:
    fake = FakeLlamaCpp()
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    monkeypatch.setitem(sys.modules, "llama_cpp._logger", fake._logger)
    return fake


def test_capture_parses_llama_cpp_lines_and_restores_the_callback(fake_llama: FakeLlamaCpp):
    with capture_reported_memory() as reported:
        for piece in LOG:
            fake_llama.log(piece)
    assert reported.weights == int(92.10 * MIB)
    assert reported.kv == 90 * MIB
    assert reported.compute == 97 * MIB
    assert reported.output == int(0.19 * MIB)
    assert reported.total == reported.weights + reported.kv + reported.compute + reported.output
    assert fake_llama.installed[-1] == fake_llama.library_callback
    assert fake_llama.forwarded == len(LOG)


def test_capture_adds_up_kv_caches_and_devices(fake_llama: FakeLlamaCpp):
    with capture_reported_memory() as reported:
        fake_llama.log("llama_kv_cache:      CUDA0 KV buffer size =   100.00 MiB\n")
        fake_llama.log("llama_kv_cache:        CPU KV buffer size =    10.00 MiB\n")
        fake_llama.log("load_tensors:        CUDA0 model buffer size =  4000.00 MiB\n")
        fake_llama.log("load_tensors:   CPU_Mapped model buffer size =   300.00 MiB\n")
        fake_llama.log("sched_reserve:      CUDA0 compute buffer size =   300.00 MiB\n")
        fake_llama.log("sched_reserve:  CUDA_Host compute buffer size =    20.00 MiB\n")
    assert (reported.kv, reported.weights, reported.compute) == (110 * MIB, 4300 * MIB, 320 * MIB)


def test_capture_restores_the_callback_after_an_error(fake_llama: FakeLlamaCpp):
    with pytest.raises(RuntimeError), capture_reported_memory():
        raise RuntimeError("load failed")
    assert fake_llama.installed[-1] == fake_llama.library_callback


def test_reported_memory_defaults():
    assert ReportedMemory().total == 0
