"""Read what the planner and the engine need from a GGUF header, without loading weights.

`ModelShape` holds the architecture facts (layers, heads, head sizes, embedding, vocabulary,
trained context) and the bytes of the weights (the sum of the tensors' sizes, what llama.cpp
maps). Parsed shapes are remembered as JSON per file, keyed by the schema version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from agentport.errors import ModelLoadError

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
    """The model's shape; with `cache_dir`, remembered per file (parsing a GGUF's vocabulary
    takes seconds, and blobs are content-addressed so the key never goes stale)."""
    name = f"{path.name}-{path.stat().st_size}.v{SCHEMA}.json"
    cached = cache_dir / name if cache_dir else None
    if cached and cached.is_file():
        try:
            return ModelShape(**json.loads(cached.read_text()))
        except (ValueError, TypeError):
            cached.unlink(missing_ok=True)
    shape = _read_gguf(path)
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(asdict(shape)))
    return shape


def shape_from_dict(data: dict[str, Any]) -> ModelShape:
    """A shape from a mapping with ModelShape's field names; unknown keys are ignored."""
    known = {f.name for f in fields(ModelShape)}
    return ModelShape(**{k: v for k, v in data.items() if k in known})


def _read_gguf(path: Path) -> ModelShape:
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path), "r")
        values = {name: _value(field) for name, field in reader.fields.items()}
        tensors = _tensor_facts(reader.tensors)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise ModelLoadError(f"cannot read GGUF metadata from {path.name}: {exc}") from exc
    return _shape(values, path.stat().st_size, tensors)


def _tensor_facts(tensors: Any) -> dict[str, int]:
    facts = {"n_params": 0, "n_bytes": 0, "n_vocab": 0}
    for tensor in tensors:
        facts["n_params"] += int(tensor.n_elements)
        facts["n_bytes"] += int(tensor.n_bytes)
        if tensor.name == "token_embd.weight" and len(tensor.shape) >= 2:
            facts["n_vocab"] = int(tensor.shape[1])
    return facts


def _shape(values: dict[str, Any], size: int, tensors: dict[str, int]) -> ModelShape:
    arch = str(values.get("general.architecture", "llama"))

    def key(name: str, default: Any = 0) -> Any:
        value = values.get(f"{arch}.{name}")
        return default if value is None else value

    n_layers = int(key("block_count"))
    n_embd = int(key("embedding_length"))
    n_heads = _largest(key("attention.head_count", 1)) or 1
    n_kv = key("attention.head_count_kv", n_heads)
    head_dim = int(key("attention.key_length", n_embd // n_heads))
    head_dim_v = int(key("attention.value_length", head_dim))
    return ModelShape(
        architecture=arch,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=_largest(n_kv),
        head_dim=head_dim,
        n_ctx_train=int(key("context_length", 4096)),
        file_size=size,
        has_rope_scaling=str(key("rope.scaling.type", "none")) not in ("none", ""),
        name=str(values.get("general.name", "")),
        quantization=FILE_TYPES.get(int(values.get("general.file_type", -1)), ""),
        parameter_count=tensors["n_params"],
        n_embd=n_embd,
        n_vocab=tensors["n_vocab"] or int(key("vocab_size")),
        n_ff=_largest(key("feed_forward_length")),
        head_dim_v=head_dim_v if head_dim_v != head_dim else 0,
        kv_heads_total=sum(n_kv) if isinstance(n_kv, list) else n_layers * int(n_kv),
        weights_bytes=tensors["n_bytes"],
        sliding_window=int(key("attention.sliding_window")),
    )


def _largest(value: Any) -> int:
    """A per-layer list's largest entry, or the value itself."""
    if isinstance(value, list):
        return int(max(value, default=0))
    return int(value)


def _value(field: Any) -> Any:
    """A GGUF field as a plain Python value (strings decoded; arrays of numbers as lists)."""
    from gguf import GGUFValueType

    if not field.types:
        return None
    if field.types[0] == GGUFValueType.ARRAY:
        if len(field.types) > 1 and field.types[1] == GGUFValueType.STRING:
            return None  # vocabularies: large and not needed here
        return [field.parts[i].tolist()[0] for i in field.data]
    part = field.parts[field.data[0]]
    if field.types[0] == GGUFValueType.STRING:
        return bytes(part).decode("utf-8", errors="replace")
    return part.tolist()[0]


def format_params(count: int) -> str:
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.0f}M"
