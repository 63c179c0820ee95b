"""The MLX engine end to end on the embedded model: the same tokens as llama.cpp, the same greedy
output for the first 32 tokens of a fixed prompt, the prompt's prefix reused from the KV cache,
grammars and embeddings refused, the same output from an mlx-community style model directory,
and a real server started with AGENTPORT_ENGINE=mlx answering through it."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentport.core import SamplingParams
from agentport.engines.base import Finished, Prefilled
from agentport.engines.llamacpp import EngineOptions, LlamaCppEngine
from agentport.engines.mlx import MlxEngine, MlxOptions
from agentport.engines.mlx_gguf import load_gguf_model
from agentport.errors import InvalidRequestError
from live_server import start_server, stop_server

pytest.importorskip("mlx.core", reason="MLX has no wheels for this platform")
pytest.importorskip("mlx_lm", reason="MLX has no wheels for this platform")

PROMPT = (
    "<|im_start|>user\nWrite a Python function that adds two numbers.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
N_TOKENS = 32
GREEDY = SamplingParams(temperature=0, max_tokens=N_TOKENS, ignore_eos=True)


def generate(engine, tokens: list[int], params: SamplingParams) -> tuple[str, list]:
    """(the text, the Prefilled and Finished items) of one generation."""
    items: queue.Queue = queue.Queue()
    engine.submit(tokens, params, items.put, threading.Event())
    text, marks = [], []
    while True:
        item = items.get(timeout=600)
        if isinstance(item, Exception):
            raise item
        if isinstance(item, str):
            text.append(item)
            continue
        marks.append(item)
        if isinstance(item, Finished):
            return "".join(text), marks


@pytest.fixture(scope="module")
def mlx_engine(gguf: Path) -> Iterator[MlxEngine]:
    engine = MlxEngine(gguf, MlxOptions(n_ctx=2048))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def mlx_greedy(mlx_engine: MlxEngine) -> str:
    text, marks = generate(mlx_engine, mlx_engine.tokenize(PROMPT), GREEDY)
    assert marks[-1] == Finished("length", N_TOKENS, marks[-1].seconds)
    return text


def test_mlx_reads_the_gguf_like_llamacpp(gguf: Path, mlx_engine: MlxEngine, mlx_greedy: str):
    reference = LlamaCppEngine(gguf, EngineOptions(n_ctx=2048, parallel=1))
    try:
        tokens = reference.tokenize(PROMPT)
        assert mlx_engine.tokenize(PROMPT) == tokens
        expected, marks = generate(reference, tokens, GREEDY)
        info, reference_info = mlx_engine.info, reference.info
    finally:
        reference.close()
    assert marks[-1].output_tokens == N_TOKENS
    assert mlx_greedy == expected
    assert (info.chat_template, info.bos_token, info.eos_token) == (
        reference_info.chat_template,
        reference_info.bos_token,
        reference_info.eos_token,
    )
    assert (info.n_ctx, info.n_ctx_train, info.parallel) == (2048, reference_info.n_ctx_train, 1)


def test_the_next_request_reuses_the_cached_prefix(mlx_engine: MlxEngine, mlx_greedy: str):
    tokens = mlx_engine.tokenize(PROMPT)
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    text, (prefilled, finished) = generate(mlx_engine, tokens, params)
    assert isinstance(prefilled, Prefilled)
    assert prefilled.cached_tokens == len(tokens) - 1
    assert finished.output_tokens == 8
    assert mlx_greedy.startswith(text) and text


def test_grammars_and_embeddings_are_refused(mlx_engine: MlxEngine):
    forced = SamplingParams(temperature=0, max_tokens=4, grammar='root ::= "x"')
    with pytest.raises(InvalidRequestError, match="llama.cpp"):
        generate(mlx_engine, mlx_engine.tokenize(PROMPT), forced)
    with pytest.raises(InvalidRequestError, match="llama.cpp"):
        mlx_engine.embed(["hello"], normalize=True, truncate=True)


def write_mlx_directory(gguf: Path, folder: Path) -> None:
    """An mlx-community style directory (config.json, safetensors, tokenizer.json) holding the
    embedded model, its byte-level BPE tokenizer rebuilt from the GGUF's vocabulary."""
    import mlx.core as mx
    from mlx_lm.utils import save_model
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    model = load_gguf_model(gguf)
    save_model(folder, model)
    config = {k: v for k, v in vars(model.args).items() if v is not None}
    embedding = {"group_size": 32, "bits": 8}  # the GGUF's Q8_0 token embeddings
    config["quantization"] = {"group_size": 32, "bits": 4, "model.embed_tokens": embedding}
    (folder / "config.json").write_text(json.dumps(config))
    _, meta = mx.load(str(gguf), return_metadata=True)
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"].tolist()
    merges = [tuple(merge.split(" ", 1)) for merge in meta["tokenizer.ggml.merges"]]
    bpe = Tokenizer(models.BPE({token: i for i, token in enumerate(tokens)}, merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    control = [token for token, kind in zip(tokens, types, strict=True) if kind == 3]
    bpe.add_special_tokens([AddedToken(token, special=True) for token in control])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>"
    )
    tokenizer.chat_template = meta["tokenizer.chat_template"]
    tokenizer.save_pretrained(folder)


def test_an_mlx_model_directory_gives_the_same_output(
    gguf: Path, tmp_path: Path, mlx_engine: MlxEngine, mlx_greedy: str
):
    write_mlx_directory(gguf, tmp_path)
    engine = MlxEngine(tmp_path, MlxOptions(n_ctx=2048))
    try:
        tokens = engine.tokenize(PROMPT)
        params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
        text, _ = generate(engine, tokens, params)
        info = engine.info
    finally:
        engine.close()
    assert tokens == mlx_engine.tokenize(PROMPT)
    assert text and mlx_greedy.startswith(text)
    assert (info.eos_token, info.quantization) == ("<|im_end|>", "4-bit")


def test_a_server_started_with_the_mlx_engine_answers(tmp_path: Path, mlx_greedy: str):
    server = start_server(
        tmp_path / "mlx-home",
        {"AGENTPORT_ENGINE": "mlx", "AGENTPORT_CONTEXT_LENGTH": "2048"},
    )
    try:
        body = {
            "model": "smollm2:135m",
            "prompt": PROMPT,
            "max_tokens": 8,
            "temperature": 0,
            "ignore_eos": True,
        }
        with server.client() as client:
            answer = client.post("/v1/completions", json=body)
            embedding = client.post("/api/embed", json={"model": "smollm2:135m", "input": "hi"})
    finally:
        stop_server(server)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["usage"]["completion_tokens"] == 8
    text = result["choices"][0]["text"]
    assert text and mlx_greedy.startswith(text)
    assert embedding.status_code == 400  # only the llama.cpp engine embeds
    assert "llama.cpp" in embedding.text
