"""Read what the planner and the engine need from a GGUF header, without loading weights.

`ModelShape` holds the architecture facts (layers, heads, head sizes, embedding, vocabulary,
trained context) and the bytes of the weights (the sum of the tensors' sizes, what llama.cpp
maps). The header is read by `gguf_header`'s bounded reader; a count that is not a count (a
string for the number of layers, say) is refused here. Parsed shapes are remembered as JSON per
file, keyed by the schema version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from agentport.config import make_private_dir, private_opener
from agentport.errors import ModelLoadError
from agentport.planner.gguf_header import GGUFHeader, TensorTotals, invalid, read_header

TOKEN_EMBEDDINGS = "token_embd.weight"  # its second dimension is the vocabulary
MAX_COUNT = 1 << 40  # layers, heads, widths and context lengths are far below this
SCHEMA = 2  # bump when ModelShape's fields change: old cached JSON is then simply not read


@dataclass(slots=True)
class ModelShape:
    architecture: str
    n_layers: int
    n_heads: int
    n_kv_heads: int  # the largest per-layer count when layers differ
    head_dim: int  # of K; V's is `head_dim_v` when it differs
    n_ctx_train: int
    file_size: int
    has_rope_scaling: bool = False  # the GGUF already asks for rope scaling of its own
    name: str = ""
    quantization: str = ""
    parameter_count: int = 0
    n_embd: int = 0
    n_vocab: int = 0
    n_ff: int = 0  # feed-forward width (the largest, when layers differ)
    head_dim_v: int = 0  # 0: same as head_dim
    kv_heads_total: int = 0  # KV heads summed over layers; 0: n_layers x n_kv_heads
    weights_bytes: int = 0  # sum of the tensors' bytes; 0: unknown, use file_size
    sliding_window: int = 0  # tokens, for models with sliding-window attention layers

    @property
    def head_dim_k(self) -> int:
        return self.head_dim

    @property
    def value_dim(self) -> int:
        return self.head_dim_v or self.head_dim

    @property
    def kv_heads(self) -> int:
        """KV heads summed over all layers (recurrent layers have none)."""
        return self.kv_heads_total or self.n_layers * self.n_kv_heads

    @property
    def weights(self) -> int:
        return self.weights_bytes or self.file_size

    def kv_values_per_token(self) -> int:
        """K and V values one token keeps in the cache, over every layer."""
        return self.kv_heads * (self.head_dim + self.value_dim)

    def kv_bytes_per_token(self, bytes_per_value: float = 2.0) -> int:
        """K and V for every layer, f16 by default."""
        return int(self.kv_values_per_token() * bytes_per_value)


FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}


def read_shape(path: Path, cache_dir: Path | None = None) -> ModelShape:
    """The model's shape; with `cache_dir`, remembered per file (walking a large vocabulary
    takes a while, and blobs are content-addressed so the key never goes stale). Raises
    InvalidRequestError for a file that is not a valid GGUF, ModelLoadError when it cannot be
    read at all."""
    name = f"{path.name}-{path.stat().st_size}.v{SCHEMA}.json"
    cached = cache_dir / name if cache_dir else None
    if cached and cached.is_file():
        try:
            return ModelShape(**json.loads(cached.read_text()))
        except (ValueError, TypeError):
            cached.unlink(missing_ok=True)
    shape = _read_gguf(path)
    if cached:
        make_private_dir(cached.parent)
        with open(cached, "w", opener=private_opener) as file:
            file.write(json.dumps(asdict(shape)))
    return shape


def shape_from_dict(data: dict[str, Any]) -> ModelShape:
    """A shape from a mapping with ModelShape's field names; unknown keys are ignored."""
    known = {f.name for f in fields(ModelShape)}
    return ModelShape(**{k: v for k, v in data.items() if k in known})


def _read_gguf(path: Path) -> ModelShape:
    try:
        header = read_header(path, shapes_of=(TOKEN_EMBEDDINGS,))
    except OSError as exc:
        raise ModelLoadError(f"cannot read GGUF metadata from {path.name}: {exc}") from exc
    return shape_from_header(header, path.stat().st_size)


def shape_from_header(header: GGUFHeader, size: int) -> ModelShape:
    """The shape a header describes (of a file of `size` bytes); refuses counts that are not
    counts (a string for the number of layers, say)."""
    values, tensors = header.values, header.tensors
    arch = str(values.get("general.architecture", "llama"))

    def key(name: str, default: int = 0) -> list[int]:
        value = values.get(f"{arch}.{name}")
        return [default] if value is None else _count(f"{arch}.{name}", value)

    n_layers = max(key("block_count"))
    n_embd = max(key("embedding_length"))
    n_heads = max(key("attention.head_count", 1)) or 1
    n_kv = key("attention.head_count_kv", n_heads)
    per_layer_kv = isinstance(values.get(f"{arch}.attention.head_count_kv"), list)
    head_dim = max(key("attention.key_length", n_embd // n_heads))
    head_dim_v = max(key("attention.value_length", head_dim))
    file_type = values.get("general.file_type", -1)
    return ModelShape(
        architecture=arch,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=max(n_kv),
        head_dim=head_dim,
        n_ctx_train=max(key("context_length", 4096)),
        file_size=size,
        has_rope_scaling=str(values.get(f"{arch}.rope.scaling.type", "none")) not in ("none", ""),
        name=str(values.get("general.name", "")),
        quantization=FILE_TYPES.get(file_type, "") if isinstance(file_type, int) else "",
        parameter_count=tensors.n_elements,
        n_embd=n_embd,
        n_vocab=_vocabulary(tensors) or max(key("vocab_size")),
        n_ff=max(key("feed_forward_length")),
        head_dim_v=head_dim_v if head_dim_v != head_dim else 0,
        kv_heads_total=sum(n_kv) if per_layer_kv else n_layers * n_kv[0],
        weights_bytes=tensors.n_bytes,
        sliding_window=max(key("attention.sliding_window")),
    )


def _vocabulary(tensors: TensorTotals) -> int:
    shape = tensors.shapes.get(TOKEN_EMBEDDINGS, ())
    return int(shape[1]) if len(shape) >= 2 else 0


def _count(name: str, value: Any) -> list[int]:
    """A count from the header as a list (one entry per layer, or one in all); anything but
    non-negative whole numbers is refused."""
    entries = value if isinstance(value, list) else [value]
    if not entries or not all(_is_count(entry) for entry in entries):
        raise invalid(f"{name} is {_brief(value)}, not a count")
    return [int(entry) for entry in entries]


def _is_count(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 <= value < MAX_COUNT and value == int(value)


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def format_params(count: int) -> str:
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.0f}M"
