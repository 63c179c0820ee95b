"""The bounded GGUF header reader: the real embedded model's header, hand-made hostile headers
(huge lengths and counts, wrong types, deep arrays, long strings), and a seeded fuzz over the
real header's bytes. Each read ends quickly, with a shape or "not a valid GGUF file", and never
allocates more than about twice the file's size."""

from __future__ import annotations

import mmap
import random
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from agentport.errors import InvalidRequestError
from agentport.planner.gguf_header import (
    MAX_ELEMENTS,
    MAX_KEYS,
    MAX_STRING,
    MAX_TEMPLATE,
    MAX_TENSORS,
    parse_header,
    read_header,
)
from agentport.planner.gguf_meta import TOKEN_EMBEDDINGS, ModelShape, read_shape, shape_from_header
from agentport.store.create import gguf_config

SLACK = 1 << 20  # bytes any read may allocate beyond twice the file's size
CASE_SECONDS = 1.0  # one read of a hand-made header, even on a busy machine
U8, I32, F32, BOOL, STRING, ARRAY, U64 = 0, 5, 6, 7, 8, 9, 10


# --- building headers by hand ----------------------------------------------------------------


def text(data: bytes) -> bytes:
    return struct.pack("<Q", len(data)) + data


def key_value(key: str, value_type: int, payload: bytes) -> bytes:
    return text(key.encode()) + struct.pack("<I", value_type) + payload


def array(item_type: int, count: int, items: bytes = b"") -> bytes:
    return struct.pack("<IQ", item_type, count) + items


def tensor_info(name: str, shape: tuple[int, ...], ggml_type: int = 0, offset: int = 0) -> bytes:
    dims = struct.pack(f"<I{len(shape)}Q", len(shape), *shape)
    return text(name.encode()) + dims + struct.pack("<IQ", ggml_type, offset)


def gguf(
    *pairs: bytes,
    tensors: tuple[bytes, ...] = (),
    counts: tuple[int, int] | None = None,
    version: int = 3,
    tail: bytes = b"",
) -> bytes:
    """A GGUF file: the header (counts default to the items given), then `tail`."""
    n_tensors, n_keys = counts or (len(tensors), len(pairs))
    head = b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_keys)
    return head + b"".join(pairs) + b"".join(tensors) + tail


def nested(depth: int) -> bytes:
    """An array's payload: arrays in arrays, `depth` deep, the innermost holding one byte."""
    return struct.pack("<IQ", ARRAY, 1) * (depth - 1) + array(U8, 1, b"\x01")


def whole(*pairs: bytes) -> bytes:
    """A whole llama GGUF file with `pairs` and one tensor, its 32 bytes of data included."""
    body = gguf(ARCH, *pairs, tensors=ONE_TENSOR)
    return body + bytes(-len(body) % 32) + bytes(32)


# The file: 73 bytes whose one array claims 2**30 uint8 items the file does not hold.
SEVENTY_THREE = gguf(key_value("tokenizer.ggml.token_type", ARRAY, array(U8, 1 << 30)))
ARCH = key_value("general.architecture", STRING, text(b"llama"))
ONE_TENSOR = (tensor_info("token_embd.weight", (4, 2)),)  # f32: 32 bytes of data

HOSTILE = {
    "the 73-byte header of issue 13": SEVENTY_THREE,
    "empty": b"",
    "magic only": b"GGUF",
    "wrong magic": b"GGML" + bytes(40),
    "version 1": gguf(version=1),
    "version 4": gguf(version=4),
    "2**64-1 keys": gguf(counts=(0, (1 << 64) - 1)),
    "more keys than bytes": gguf(counts=(0, 1000)),
    "more keys than allowed": gguf(counts=(0, MAX_KEYS + 1)),
    "2**63 tensors": gguf(counts=(1 << 63, 0)),
    "more tensors than allowed": gguf(counts=(MAX_TENSORS + 1, 0)),
    "a key longer than the file": gguf(struct.pack("<Q", 1 << 62) + b"general"),
    "a string longer than the file": gguf(key_value("general.name", STRING, text(b"x")[:8])),
    "a string over 1 MiB": gguf(key_value("general.name", STRING, text(bytes(MAX_STRING + 1)))),
    "a chat template over 4 MiB": gguf(
        key_value("tokenizer.chat_template", STRING, text(bytes(MAX_TEMPLATE + 1)))
    ),
    "a vocabulary entry over 1 MiB": gguf(
        key_value("tokenizer.ggml.tokens", ARRAY, array(STRING, 1, text(bytes(MAX_STRING + 1))))
    ),
    "2**64-1 strings": gguf(key_value("tokenizer.ggml.tokens", ARRAY, array(STRING, 2**64 - 1))),
    "strings past the end": gguf(
        key_value("tokenizer.ggml.tokens", ARRAY, array(STRING, 3, text(b"a") + text(b"b")))
    ),
    "more array items than allowed": gguf(key_value("a", ARRAY, array(STRING, MAX_ELEMENTS + 1))),
    "numbers past the end": gguf(key_value("a", ARRAY, array(F32, 1 << 40, bytes(64)))),
    "an unknown value type": gguf(key_value("general.name", 13, b"")),
    "an unknown array item type": gguf(key_value("a", ARRAY, array(99, 1, bytes(8)))),
    "arrays three deep": gguf(key_value("a", ARRAY, nested(3))),
    "arrays 10000 deep": gguf(key_value("a", ARRAY, nested(10000))),
    "a key twice": gguf(ARCH, ARCH),
    "alignment 3": gguf(key_value("general.alignment", 4, struct.pack("<I", 3))),
    "alignment as a string": gguf(key_value("general.alignment", STRING, text(b"32"))),
    "a tensor of 5 dimensions": gguf(tensors=(tensor_info("t", (1, 1, 1, 1, 1)),)),
    "a tensor of an unknown type": gguf(tensors=(tensor_info("t", (32,), ggml_type=99),)),
    "a tensor not a whole number of blocks": gguf(tensors=(tensor_info("t", (33,), 2),)),
    "tensor data past the end": gguf(ARCH, tensors=ONE_TENSOR, tail=bytes(16)),
    "a tensor 2**64 wide": gguf(tensors=(tensor_info("t", (2**64 - 1, 2**64 - 1)),)),
    "layers as a string": whole(key_value("llama.block_count", STRING, text(b"30"))),
    "layers negative": whole(key_value("llama.block_count", I32, struct.pack("<i", -1))),
    "heads as NaN": whole(
        key_value("llama.attention.head_count", F32, struct.pack("<f", float("nan")))
    ),
    "context as a boolean": whole(key_value("llama.context_length", BOOL, b"\x01")),
    "an empty per-layer list": whole(
        key_value("llama.attention.head_count_kv", ARRAY, array(U8, 0))
    ),
}

REASONS = {  # a few words of each refusal, so a refusal for another reason fails the test
    "the 73-byte header of issue 13": "1073741824 numbers",
    "empty": "past the end",
    "magic only": "past the end",
    "wrong magic": "magic",
    "version 1": "version 1",
    "version 4": "version 4",
    "2**64-1 keys": "more than 4096",
    "more keys than bytes": "1000 metadata keys",
    "more keys than allowed": "more than 4096",
    "2**63 tensors": "more than 65536",
    "more tensors than allowed": "more than 65536",
    "a key longer than the file": "over 65535",
    "a string longer than the file": "past the end",
    "a string over 1 MiB": "over 1048576",
    "a chat template over 4 MiB": "over 4194304",
    "a vocabulary entry over 1 MiB": "over 1048576",
    "2**64-1 strings": "more than 8388608",
    "strings past the end": "3 array items",
    "more array items than allowed": "more than 8388608",
    "numbers past the end": "1099511627776 numbers",
    "an unknown value type": "unknown value type 13",
    "an unknown array item type": "unknown array item type 99",
    "arrays three deep": "nested deeper",
    "arrays 10000 deep": "nested deeper",
    "a key twice": "appears twice",
    "alignment 3": "alignment",
    "alignment as a string": "alignment",
    "a tensor of 5 dimensions": "5 dimensions",
    "a tensor of an unknown type": "unknown type 99",
    "a tensor not a whole number of blocks": "not a multiple of 32",
    "tensor data past the end": "tensor data",
    "a tensor 2**64 wide": "tensor data",
    "layers as a string": "llama.block_count",
    "layers negative": "llama.block_count",
    "heads as NaN": "llama.attention.head_count",
    "context as a boolean": "llama.context_length",
    "an empty per-layer list": "llama.attention.head_count_kv",
}


def outcome(data: bytes | mmap.mmap) -> ModelShape | InvalidRequestError:
    """What reading `data` as a whole GGUF file gives: a shape, or the reader's refusal."""
    try:
        return shape_from_header(parse_header(data, (TOKEN_EMBEDDINGS,)), len(data))
    except InvalidRequestError as exc:
        return exc


def bounded(read: Callable[[], object], size: int, seconds: float = CASE_SECONDS) -> object:
    """`read()`, checked to end within `seconds` and to allocate at most 2 x `size` + SLACK."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = read()
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < seconds
    assert peak < 2 * size + SLACK, f"{peak} bytes allocated for a file of {size}"
    return result


# --- the real header and hand-made ones ------------------------------------------------------


def test_the_embedded_models_header(gguf: Path) -> None:
    header = read_header(gguf, (TOKEN_EMBEDDINGS,))
    assert header.values["general.architecture"] == "llama"
    assert header.values["llama.block_count"] == 30
    assert header.values["tokenizer.ggml.tokens"] is None  # walked, not kept
    assert "{%" in header.values["tokenizer.chat_template"]
    assert header.tensors.count == 272 and header.tensors.n_bytes == 96_576_768
    assert header.tensors.shapes == {TOKEN_EMBEDDINGS: (576, 49152)}
    assert header.data_offset + header.tensors.n_bytes == gguf.stat().st_size
    shape = read_shape(gguf)
    assert (shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.head_dim) == (30, 9, 3, 64)
    assert (shape.n_vocab, shape.quantization, shape.parameter_count) == (
        49152,
        "Q4_1",
        134_515_008,
    )


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_header_is_refused_quickly(name: str) -> None:
    data = HOSTILE[name]
    result = bounded(lambda: outcome(data), len(data))
    assert isinstance(result, InvalidRequestError), result
    assert result.message.startswith("not a valid GGUF file: ")
    assert REASONS[name] in result.message


def test_a_chat_template_of_3_mib_is_read() -> None:
    template = b"{{ messages }}" + bytes(3 << 20)
    data = whole(key_value("tokenizer.chat_template", STRING, text(template)))
    assert isinstance(bounded(lambda: outcome(data), len(data)), ModelShape)


def test_a_hand_made_file_with_its_tensor_reads() -> None:
    data = whole(key_value("llama.block_count", I32, struct.pack("<i", 2)))
    shape = bounded(lambda: outcome(data), len(data))
    assert isinstance(shape, ModelShape) and shape.n_layers == 2 and shape.weights_bytes == 32


def test_create_refuses_the_73_byte_header_at_once(tmp_path: Path) -> None:
    path = tmp_path / "crafted.gguf"
    path.write_bytes(SEVENTY_THREE)
    started = time.perf_counter()
    with pytest.raises(InvalidRequestError, match="not a valid GGUF file"):
        gguf_config(path, None)
    assert time.perf_counter() - started < CASE_SECONDS


# --- fuzz ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_file(gguf: Path) -> Iterator[mmap.mmap]:
    """The embedded GGUF mapped copy-on-write: writes change this process's pages only."""
    with gguf.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY) as m:
        yield m


@pytest.mark.timeout(60)
def test_every_truncation_of_the_first_4_kib_is_refused(real_file: mmap.mmap) -> None:
    head = real_file[:4096]

    def read_all() -> None:
        for end in range(len(head) + 1):
            assert isinstance(outcome(head[:end]), InvalidRequestError), end

    bounded(read_all, len(head), seconds=20)


def mutations(rng: random.Random, size: int, regions: list[tuple[int, int]]) -> list[tuple]:
    """(offset, bytes) writes: flipped bytes, huge lengths and counts, other type numbers."""
    start, end = rng.choice(regions)
    offset = rng.randrange(start, min(end, size - 8))
    kind = rng.randrange(4)
    if kind == 0:
        return [(offset, bytes([rng.randrange(256)]))]
    if kind == 1:
        huge = rng.choice([2**64 - 1, 2**63, 1 << 40, 1 << 32, size, size - offset])
        return [(offset, struct.pack("<Q", huge % 2**64))]
    if kind == 2:
        return [(offset, struct.pack("<I", rng.choice([ARRAY, STRING, U64, 13, 99, 2**31])))]
    return [(offset, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16))))]


@pytest.mark.timeout(60)
def test_fuzz_the_real_header(real_file: mmap.mmap, gguf: Path) -> None:
    """Mutations of the real file's header (its start, its tensor infos, anywhere): each read
    ends within a second with a shape or the refusal."""
    data_offset = read_header(gguf).data_offset
    size = len(real_file)
    regions = [(0, 4096), (data_offset - 272 * 60, data_offset), (0, data_offset)]
    rng = random.Random(13)
    results = {"shape": 0, "refused": 0}
    for _ in range(40):
        writes = mutations(rng, size, regions)
        saved = [(offset, real_file[offset : offset + len(data)]) for offset, data in writes]
        for offset, data in writes:
            real_file[offset : offset + len(data)] = data
        case_started = time.perf_counter()
        result = outcome(real_file)
        assert time.perf_counter() - case_started < CASE_SECONDS, writes
        results["shape" if isinstance(result, ModelShape) else "refused"] += 1
        for offset, data in reversed(saved):
            real_file[offset : offset + len(data)] = data
    assert results["shape"] and results["refused"]  # the fuzz reaches both outcomes


@pytest.fixture(scope="module")
def small_realistic(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small GGUF shaped like a real one: vocabulary, merges, per-layer lists, a template,
    a nested array and a few tensors."""
    path = tmp_path_factory.mktemp("gguf") / "small.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(3)
    writer.add_context_length(2048)
    writer.add_embedding_length(32)
    writer.add_head_count(4)
    writer.add_head_count_kv([2, 0, 2])
    writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    writer.add_token_list([f"tok{i}" for i in range(300)])
    writer.add_token_types([1] * 300)
    writer.add_token_merges([f"t o{i}" for i in range(200)])
    writer.add_array("test.nested", [[1, 2], [3]])
    writer.add_tensor(TOKEN_EMBEDDINGS, np.ones((300, 32), dtype=np.float16))
    writer.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


@pytest.mark.timeout(60)
def test_fuzz_a_small_realistic_file_within_its_size(small_realistic: bytes) -> None:
    """Mutations anywhere in a small whole file, each read traced: never more than twice the
    file's size allocated (plus a constant), never past a second."""
    assert isinstance(outcome(small_realistic), ModelShape)
    size = len(small_realistic)
    rng = random.Random(12)
    for _ in range(300):
        data = bytearray(small_realistic)
        for offset, chunk in mutations(rng, size, [(0, size)]):
            data[offset : offset + len(chunk)] = chunk
        frozen = bytes(data)
        bounded(lambda frozen=frozen: outcome(frozen), size)
