"""GGUF files on MLX: the weights mapped onto mlx-lm's llama model, and the GGUF's own tokenizer.

`mx.load` reads Q4_0, Q4_1 and Q8_0 tensors as MLX quantized arrays (packed weight, scales and
biases, group size 32) and F16/F32 tensors as they are. Tensor names are mapped from llama.cpp's
(`blk.3.attn_q`) to mlx-lm's (`model.layers.3.self_attn.q_proj`), and every linear or embedding
layer whose tensor came quantized becomes a quantized layer of that bit width. llama.cpp's
converter stores the rows of Q and K in the interleaved rope order, so the model runs with
`rope_traditional=True`; a `rope_freqs` tensor (Llama 3's long-context factors) becomes the
rope's frequencies.

The tokenizer is llama.cpp's own, loaded vocabulary-only (no weights, no context): tokens and
text pieces are exactly the llama.cpp engine's.
"""

from __future__ import annotations

import codecs
import ctypes
import re
from pathlib import Path
from typing import Any

from agentport.engines import llamacpp_vocab as vocab_text
from agentport.errors import ModelLoadError

GROUP_SIZE = 32  # of every GGUF quantized block type MLX reads
PIECE_BYTES = 256
ARCHITECTURES = ("llama",)  # GGUF architectures mapped onto mlx-lm's llama model
READABLE_TYPES = "Q4_0, Q4_1, Q8_0, F16 and F32"

TOP_LEVEL = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
IN_BLOCK = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
BLOCK = re.compile(r"blk\.(\d+)\.(\w+)")


# --- weights ---------------------------------------------------------------------------------


def load_gguf_model(path: Path, yarn_factor: float = 1.0):
    """The mlx-lm model for a llama-family GGUF file, its weights evaluated."""
    import mlx.core as mx
    from mlx_lm.models import llama

    try:
        tensors, meta = mx.load(str(path), format="gguf", return_metadata=True)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelLoadError(
            f"MLX could not read {path.name} (it reads GGUF tensors of types {READABLE_TYPES}): "
            f"{exc}"
        ) from exc
    architecture = str(meta.get("general.architecture", ""))
    if architecture not in ARCHITECTURES:
        raise ModelLoadError(
            f"the MLX engine runs GGUF files of the llama family; {path.name} is {architecture!r}"
        )
    rope_freqs = tensors.pop("rope_freqs.weight", None)
    weights = {_mlx_name(name): array for name, array in tensors.items()}
    model = llama.Model(llama.ModelArgs(**model_args(meta, weights, yarn_factor)))
    _quantize_like(model, weights)
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as exc:
        raise ModelLoadError(f"{path.name} does not fit mlx-lm's llama model: {exc}") from exc
    if rope_freqs is not None:
        _use_rope_factors(model, rope_freqs, float(_value(meta, "llama.rope.freq_base", 10000.0)))
    mx.eval(model.parameters())
    return model


def model_args(meta: dict[str, Any], weights: dict[str, Any], yarn_factor: float) -> dict:
    """mlx-lm ModelArgs for the GGUF's llama.* metadata."""

    def get(key: str, default: Any = None) -> Any:
        return _value(meta, f"llama.{key}", default)

    n_heads = int(get("attention.head_count"))
    embedding = weights["model.embed_tokens.weight"]
    n_ctx_train = int(get("context_length", 0)) or None
    args = {
        "model_type": "llama",
        "hidden_size": int(get("embedding_length")),
        "num_hidden_layers": int(get("block_count")),
        "intermediate_size": int(get("feed_forward_length")),
        "num_attention_heads": n_heads,
        "num_key_value_heads": int(get("attention.head_count_kv", n_heads)),
        "head_dim": get("attention.key_length"),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        "vocab_size": int(get("vocab_size", embedding.shape[0])),
        "rope_theta": float(get("rope.freq_base", 10000.0)),
        "rope_traditional": True,
        "max_position_embeddings": n_ctx_train,
        "tie_word_embeddings": "lm_head.weight" not in weights,
        "rope_scaling": _rope_scaling(get, yarn_factor, n_ctx_train),
    }
    if args["head_dim"] is not None:
        args["head_dim"] = int(args["head_dim"])
    return args


def _rope_scaling(get, yarn_factor: float, n_ctx_train: int | None) -> dict | None:
    """The runtime's YaRN extension, else the scaling the GGUF itself asks for."""
    if yarn_factor > 1.0:
        return {
            "type": "yarn",
            "factor": yarn_factor,
            "original_max_position_embeddings": n_ctx_train,
        }
    kind, factor = str(get("rope.scaling.type", "none")), float(get("rope.scaling.factor", 0.0))
    if kind == "linear" and factor > 1.0:
        return {"type": "linear", "factor": factor}
    if kind == "yarn" and factor > 1.0:
        original = int(get("rope.scaling.original_context_length", n_ctx_train or 0))
        return {"type": "yarn", "factor": factor, "original_max_position_embeddings": original}
    return None


def _value(meta: dict[str, Any], key: str, default: Any = None) -> Any:
    """A metadata value as a Python scalar (mx.load gives numbers as 0-d arrays)."""
    value = meta.get(key)
    if value is None:
        return default
    return value.item() if hasattr(value, "item") else value


def _mlx_name(gguf_name: str) -> str:
    base, _, leaf = gguf_name.rpartition(".")
    block = BLOCK.fullmatch(base)
    try:
        if block:
            return f"model.layers.{block[1]}.{IN_BLOCK[block[2]]}.{leaf}"
        return f"{TOP_LEVEL[base]}.{leaf}"
    except KeyError:
        raise ModelLoadError(f"no llama-model place for the GGUF tensor {gguf_name}") from None


def _quantize_like(model, weights: dict[str, Any]) -> None:
    """Turn each layer whose weight came quantized into a quantized layer of the same width."""
    import mlx.nn as nn

    def predicate(module_path: str, module) -> dict | bool:
        scales = weights.get(f"{module_path}.scales")
        if scales is None:
            return False
        packed = weights[f"{module_path}.weight"].shape[-1]  # uint32 words per row
        bits = packed * 32 // (scales.shape[-1] * GROUP_SIZE)
        return {"group_size": GROUP_SIZE, "bits": bits}

    nn.quantize(model, class_predicate=predicate)


class FactoredRoPE:
    """Interleaved rope whose per-dimension wavelengths are multiplied by the GGUF's factors,
    as llama.cpp applies `rope_freqs`."""

    def __init__(self, dims: int, base: float, factors) -> None:
        import mlx.core as mx

        self.dims = dims
        self.freqs = base ** (mx.arange(0, dims, 2, dtype=mx.float32) / dims) * factors

    def __call__(self, x, offset=0):
        import mlx.core as mx

        return mx.fast.rope(
            x, self.dims, traditional=True, base=None, scale=1.0, offset=offset, freqs=self.freqs
        )


def _use_rope_factors(model, factors, base: float) -> None:
    import mlx.core as mx

    factors = factors.astype(mx.float32)
    for layer in model.layers:
        attention = layer.self_attn
        attention.rope = FactoredRoPE(attention.head_dim, base, factors)


# --- tokenizer -------------------------------------------------------------------------------


class GgufVocab:
    """The GGUF's tokenizer through llama.cpp, loaded vocabulary-only.

    `start()` readies the one reused incremental UTF-8 decoder for a new generation; `piece`
    then turns each token into text that never splits a UTF-8 character.
    """

    def __init__(self, path: Path) -> None:
        import llama_cpp
        from llama_cpp import _internals
        from llama_cpp._logger import set_verbose

        set_verbose(False)
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        try:
            self._model = _internals.LlamaModel(path_model=str(path), params=params, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"llama.cpp could not read the vocabulary of {path.name}") from exc
        self.lib, self.vocab = llama_cpp, self._model.vocab
        self.metadata = self._model.metadata()
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.bos_token = self.token_text(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos_token = self.token_text(llama_cpp.llama_vocab_eos(self.vocab))
        n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.eog = [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t)]
        self._buffer = ctypes.create_string_buffer(PIECE_BYTES)
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    def tokenize(self, text: str, special: bool = True, start: bool = True) -> list[int]:
        add_bos = vocab_text.wants_bos(self._add_bos, self.bos_token, text, start)
        return vocab_text.tokenize(self._model, text, special, add_bos)

    def token_text(self, token: int) -> str:
        return vocab_text.token_text(self._model, token)

    def fim_tokens(self) -> tuple[str, str, str] | None:
        return vocab_text.fim_texts(self.lib, self._model, self.vocab)

    def control_texts(self) -> tuple[str, ...]:
        return vocab_text.control_texts(self.lib, self._model, self.vocab)

    def start(self) -> None:
        self._utf8.reset()

    def piece(self, token: int) -> str:
        size = self.lib.llama_token_to_piece(self.vocab, token, self._buffer, PIECE_BYTES, 0, True)
        return self._utf8.decode(ctypes.string_at(self._buffer, size)) if size > 0 else ""

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)

    def close(self) -> None:
        self._model.close()
