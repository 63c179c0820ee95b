"""Read what the planner and the engine need from a GGUF header, without loading weights."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentport.errors import ModelLoadError


@dataclass(slots=True)
class ModelShape:
    architecture: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    n_ctx_train: int
    file_size: int
    has_rope_scaling: bool = False  # the GGUF already asks for rope scaling of its own
    name: str = ""
    quantization: str = ""
    parameter_count: int = 0

    def kv_bytes_per_token(self, bytes_per_value: float = 2.0) -> int:
        """K and V for every layer, f16 by default."""
        return int(2 * self.n_layers * self.n_kv_heads * self.head_dim * bytes_per_value)


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
    cached = cache_dir / f"{path.name}-{path.stat().st_size}.json" if cache_dir else None
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


def _read_gguf(path: Path) -> ModelShape:
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path), "r")
        fields = {name: _value(field) for name, field in reader.fields.items()}
        n_params = sum(int(t.n_elements) for t in reader.tensors)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise ModelLoadError(f"cannot read GGUF metadata from {path.name}: {exc}") from exc
    return _shape(fields, path.stat().st_size, n_params)


def _shape(fields: dict[str, Any], size: int, n_params: int) -> ModelShape:
    arch = str(fields.get("general.architecture", "llama"))
    n_embd = int(fields.get(f"{arch}.embedding_length", 0))
    n_heads = int(fields.get(f"{arch}.attention.head_count", 1) or 1)
    n_kv = fields.get(f"{arch}.attention.head_count_kv", n_heads)
    head_dim = int(fields.get(f"{arch}.attention.key_length", n_embd // n_heads if n_heads else 0))
    return ModelShape(
        architecture=arch,
        n_layers=int(fields.get(f"{arch}.block_count", 0)),
        n_heads=n_heads,
        n_kv_heads=int(n_kv if not isinstance(n_kv, list) else max(n_kv)),
        head_dim=head_dim,
        n_ctx_train=int(fields.get(f"{arch}.context_length", 4096)),
        file_size=size,
        has_rope_scaling=str(fields.get(f"{arch}.rope.scaling.type", "none")) not in ("none", ""),
        name=str(fields.get("general.name", "")),
        quantization=FILE_TYPES.get(int(fields.get("general.file_type", -1)), ""),
        parameter_count=n_params,
    )


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
