"""A bounded reader of GGUF headers: the metadata key/values and the tensor infos, never the
tensor data.

A model file is untrusted input (`/api/create` takes uploads), so every count and length is
checked against the bytes left in the file before anything is allocated or looped over; strings,
key counts, tensor counts and the array elements walked in all have bounds of their own; arrays
of arrays nest at most `MAX_DEPTH` deep. Reading stops where the tensor data begins, and the
tensors must lie inside the file. Anything else is an `InvalidRequestError` saying "not a valid
GGUF file". The file is memory-mapped, so only the values kept are copied: scalars, strings,
numeric arrays up to `MAX_KEPT_ARRAY` elements (per-layer counts). Vocabularies are walked, not
kept.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentport.errors import InvalidRequestError

MAGIC = b"GGUF"
VERSIONS = (2, 3)  # version 1 had 32-bit counts; nobody writes it any more
DEFAULT_ALIGNMENT = 32
MAX_STRING = 1 << 20  # bytes of one metadata string (a vocabulary entry included)
MAX_TEMPLATE = 4 << 20  # bytes of a chat template (tokenizer.chat_template*)
MAX_NAME = 65535  # bytes of a key or tensor name (the GGUF spec's own limit)
MAX_KEYS = 4096  # metadata key/values (real models have under a hundred)
MAX_TENSORS = 1 << 16
MAX_ELEMENTS = 1 << 23  # array elements walked over the whole header (vocabularies ~ 300k)
MAX_KEPT_ARRAY = 4096  # longer numeric arrays are walked but not kept (their value is None)
MAX_DEPTH = 2  # an array of arrays, no deeper
MAX_DIMS = 4  # GGML_MAX_DIMS
STRING, ARRAY = 8, 9
SCALARS = {  # GGUF value type -> struct format
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
NUMBERS = {code: struct.Struct("<" + code) for code in SCALARS.values()}


@dataclass(slots=True)
class TensorTotals:
    """What the planner needs of the tensors: counts and bytes, and a few shapes by name."""

    count: int = 0
    n_elements: int = 0
    n_bytes: int = 0
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(slots=True)
class GGUFHeader:
    values: dict[str, Any]  # scalars, strings, short numeric arrays; None for what is not kept
    tensors: TensorTotals
    data_offset: int


def invalid(reason: str) -> InvalidRequestError:
    return InvalidRequestError(f"not a valid GGUF file: {reason}")


def read_header(path: Path, shapes_of: tuple[str, ...] = ()) -> GGUFHeader:
    """The header of the GGUF file at `path`; `shapes_of` names tensors whose shape to keep."""
    with path.open("rb") as handle:
        size = path.stat().st_size
        if size < 24:
            raise invalid(f"{path.name} is {size} bytes, shorter than any GGUF header")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return parse_header(view, shapes_of)


def parse_header(data: Any, shapes_of: tuple[str, ...] = ()) -> GGUFHeader:
    """The header of a whole GGUF file held in `data` (bytes, or a memory map of the file)."""
    reader = _Reader(data)
    if reader.take(4) != MAGIC:
        raise invalid("it does not start with the GGUF magic bytes")
    version = reader.scalar("I")
    if version not in VERSIONS:
        raise invalid(f"GGUF version {version} is not supported (2 and 3 are)")
    tensor_count, key_count = reader.scalar("Q"), reader.scalar("Q")
    reader.check_count(key_count, MAX_KEYS, 13, "metadata keys")  # 8 + 1 + 4 bytes at least
    reader.check_count(tensor_count, MAX_TENSORS, 25, "tensors")  # 8 + 1 + 4 + 4 + 8
    values = _read_values(reader, key_count)
    tensors, extents = _read_tensor_infos(reader, tensor_count, shapes_of)
    alignment = values.get("general.alignment", DEFAULT_ALIGNMENT)
    if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
        raise invalid(f"general.alignment {alignment!r} is not a power of two")
    data_offset = -(-reader.offset // alignment) * alignment
    if data_offset + extents > reader.size:
        raise invalid("the tensor data runs past the end of the file (is it truncated?)")
    return GGUFHeader(values, tensors, data_offset)


def _read_values(reader: _Reader, count: int) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for _ in range(count):
        key = reader.string(MAX_NAME, "key")
        if key in values:
            raise invalid(f"the key {key!r} appears twice")
        value_type = reader.scalar("I")
        limit = MAX_TEMPLATE if key.startswith("tokenizer.chat_template") else MAX_STRING
        values[key] = reader.value(value_type, limit, depth=0)
    return values


def _read_tensor_infos(
    reader: _Reader, count: int, shapes_of: tuple[str, ...]
) -> tuple[TensorTotals, int]:
    """The tensors' totals, and how many bytes of tensor data they need after the header."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    totals, extents = TensorTotals(count=count), 0
    for _ in range(count):
        name = reader.string(MAX_NAME, "tensor name")
        n_dims = reader.scalar("I")
        if n_dims > MAX_DIMS:
            raise invalid(f"tensor {name!r} has {n_dims} dimensions, more than {MAX_DIMS}")
        shape = tuple(reader.scalar("Q") for _ in range(n_dims))
        ggml_type, offset = reader.scalar("I"), reader.scalar("Q")
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        except (ValueError, KeyError):
            raise invalid(f"tensor {name!r} has an unknown type {ggml_type}") from None
        n_elements = _product(shape)
        if shape and shape[0] % block:
            raise invalid(f"tensor {name!r}: {shape[0]} is not a multiple of {block}")
        n_bytes = n_elements // block * type_size
        totals.n_elements += n_elements
        totals.n_bytes += n_bytes
        extents = max(extents, offset + n_bytes)
        if name in shapes_of:
            totals.shapes[name] = shape
    return totals, extents


def _product(shape: tuple[int, ...]) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n


class _Reader:
    """A cursor over the file's bytes that checks each read against what is left."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.size = len(data)
        self.offset = 0
        self.elements_left = MAX_ELEMENTS

    def need(self, count: int, what: str) -> None:
        if count > self.size - self.offset:
            raise invalid(f"{what} at byte {self.offset} runs past the end of the file")

    def take(self, count: int, what: str = "the header") -> bytes:
        self.need(count, what)
        start, self.offset = self.offset, self.offset + count
        return bytes(self.data[start : self.offset])

    def scalar(self, code: str) -> Any:
        number = NUMBERS[code]
        self.need(number.size, "a number")
        (value,) = number.unpack_from(self.data, self.offset)
        self.offset += number.size
        return value

    def check_count(self, count: int, limit: int, least_bytes: int, what: str) -> None:
        """`count` items of at least `least_bytes` each must fit what is left, and `limit`."""
        if count > limit:
            raise invalid(f"{count} {what}, more than {limit}")
        self.need(count * least_bytes, f"{count} {what}")

    def string(self, limit: int, what: str = "a string") -> str:
        length = self.scalar("Q")
        if length > limit:
            raise invalid(f"{what} of {length} bytes at byte {self.offset}, over {limit}")
        return self.take(length, what).decode("utf-8", errors="replace")

    def skip_strings(self, count: int, limit: int) -> None:
        """Walk `count` strings (a vocabulary: the one loop that runs per entry, kept tight)."""
        data, offset, size, unpack = self.data, self.offset, self.size, NUMBERS["Q"].unpack_from
        for _ in range(count):
            if offset + 8 > size:
                break
            (length,) = unpack(data, offset)
            if length > limit or length > size - offset - 8:
                break
            offset += 8 + length
        else:
            self.offset = offset
            return
        self.offset = offset
        self.string(limit)  # this string is the bad one: reading it raises what is wrong

    def value(self, value_type: int, limit: int, depth: int) -> Any:
        if value_type in SCALARS:
            return self.scalar(SCALARS[value_type])
        if value_type == STRING:
            return self.string(limit)
        if value_type == ARRAY:
            return self.array(limit, depth + 1)
        raise invalid(f"unknown value type {value_type} at byte {self.offset - 4}")

    def array(self, limit: int, depth: int) -> list[Any] | None:
        """A numeric array up to MAX_KEPT_ARRAY long as a list; anything else walked: None."""
        if depth > MAX_DEPTH:
            raise invalid(f"arrays nested deeper than {MAX_DEPTH} at byte {self.offset}")
        item_type, count = self.scalar("I"), self.scalar("Q")
        if item_type in SCALARS:
            code = SCALARS[item_type]
            width = count * NUMBERS[code].size
            self.need(width, f"an array of {count} numbers")
            kept = None
            if count <= MAX_KEPT_ARRAY:
                kept = list(struct.unpack_from(f"<{count}{code}", self.data, self.offset))
            self.offset += width
            return kept
        if item_type not in (STRING, ARRAY):
            raise invalid(f"unknown array item type {item_type} at byte {self.offset - 12}")
        self.check_count(count, self.elements_left, 8, "array items")
        self.elements_left -= count
        if item_type == STRING:
            self.skip_strings(count, limit)
        for _ in range(count if item_type == ARRAY else 0):
            self.array(limit, depth + 1)
        return None
