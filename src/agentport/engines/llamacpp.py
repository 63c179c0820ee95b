"""llama.cpp through llama-cpp-python: loading, tokenization and the decode loop.

`Llama` (the library's high-level class) loads the weights and creates the context; the decode
loop then calls llama.cpp's low-level API directly. Per token it does one llama_decode, one
sample in llama.cpp's own sampler chain, one detokenize into a reused buffer and one incremental
UTF-8 decode; nothing else. The tokens held in the KV cache are remembered, so a request that
repeats the previous request's prefix evaluates only the new tokens.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agentport.core import SamplingParams
from agentport.engines.base import EngineInfo, Finished, Generated, Prefilled
from agentport.engines.llamacpp_grammar import GrammarGate
from agentport.errors import EngineError, InvalidRequestError, ModelLoadError
from agentport.planner.context import ContextPlan, plan_context
from agentport.planner.gguf_meta import read_shape

log = logging.getLogger("agentport.engine")

SEQ = 0  # one sequence per context for now
PIECE_BYTES = 256
DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp: pick a random seed


@dataclass(slots=True)
class EngineOptions:
    n_ctx: int = 32768
    threads: int = 0
    batch_size: int = 512
    flash_attention: bool = True
    available_memory: int = 0  # bytes; 0: probe the machine
    metadata_cache: Path | None = None  # where parsed GGUF headers are remembered


class _Cancelled(Exception):
    pass


def default_threads() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


class LlamaCppEngine:
    def __init__(self, path: Path, options: EngineOptions) -> None:
        import llama_cpp

        self._lib = llama_cpp
        shape = read_shape(path, options.metadata_cache)
        memory = options.available_memory or available_memory()
        plan = plan_context(shape, options.n_ctx, memory)
        threads = options.threads or default_threads()
        self._llama = self._load(path, plan, options, threads, shape.n_ctx_train)
        self._ctx = self._llama._ctx.ctx
        self._vocab = llama_cpp.llama_model_get_vocab(self._llama._model.model)
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._n_ctx = self._llama.n_ctx()
        self._batch_size = options.batch_size
        self._prompt_batch = llama_cpp.llama_batch_init(options.batch_size, 0, 1)
        self._token_batch = llama_cpp.llama_batch_init(1, 0, 1)
        self._piece = ctypes.create_string_buffer(PIECE_BYTES)
        self._cached: list[int] = []
        self._eog_tokens: list[int] | None = None
        self._path, self._options, self._threads = path, options, threads
        self._n_ctx_train = shape.n_ctx_train
        self._embedder = None
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.info = self._describe(shape, plan, threads)

    def _load(
        self, path: Path, plan: ContextPlan, options: EngineOptions, threads: int, train: int
    ):
        kwargs = dict(
            model_path=str(path),
            n_ctx=plan.n_ctx,
            n_batch=options.batch_size,
            n_ubatch=options.batch_size,
            n_threads=threads,
            n_threads_batch=threads,
            flash_attn=options.flash_attention,
            verbose=False,
        )
        if plan.yarn_factor > 1.0:
            kwargs.update(
                rope_scaling_type=self._lib.LLAMA_ROPE_SCALING_TYPE_YARN,
                rope_freq_scale=1.0 / plan.yarn_factor,
                yarn_orig_ctx=train,
            )
        if plan.capped_by_memory:
            log.warning("context capped at %d tokens by available memory", plan.n_ctx)
        try:
            return self._lib.Llama(**kwargs)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"llama.cpp could not load {path.name}: {exc}") from exc

    def _describe(self, shape, plan: ContextPlan, threads: int) -> EngineInfo:
        meta = {k: v for k, v in self._llama.metadata.items() if len(v) < 2048}
        return EngineInfo(
            n_ctx=self._n_ctx,
            n_ctx_train=shape.n_ctx_train,
            rope_scaling=plan.rope_scaling,
            chat_template=self._llama.metadata.get("tokenizer.chat_template"),
            bos_token=self._token_text(self._lib.llama_vocab_bos(self._vocab)),
            eos_token=self._token_text(self._lib.llama_vocab_eos(self._vocab)),
            file_size=shape.file_size,
            architecture=shape.architecture,
            quantization=shape.quantization,
            parameter_count=shape.parameter_count,
            threads=threads,
            metadata=meta,
            fim_tokens=self._fim_tokens(),
        )

    def _fim_tokens(self) -> tuple[str, str, str] | None:
        lib, vocab = self._lib, self._vocab
        ids = (
            lib.llama_vocab_fim_pre(vocab),
            lib.llama_vocab_fim_suf(vocab),
            lib.llama_vocab_fim_mid(vocab),
        )
        if min(ids) < 0:
            return None
        pre, suf, mid = (self._token_text(t) for t in ids)
        return pre, suf, mid

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llama.detokenize([token], special=True).decode("utf-8", errors="replace")

    # --- tokens ------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        bos = self.info.bos_token
        add_bos = self._add_bos and not (bos and text.startswith(bos))
        return self._llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    # --- generation --------------------------------------------------------------------------

    def generate(
        self, tokens: list[int], params: SamplingParams, cancel: threading.Event
    ) -> Iterator[Generated]:
        if not tokens:
            raise EngineError("empty prompt")
        started = time.perf_counter()
        cached = self._reuse_prefix(tokens)
        try:
            self._prefill(tokens, cached, cancel)
        except _Cancelled:
            yield Finished("cancelled", 0, 0.0)
            return
        yield Prefilled(len(tokens), cached, time.perf_counter() - started)
        yield from self._decode(len(tokens), params, cancel)

    def _reuse_prefix(self, tokens: list[int]) -> int:
        cached = self._cached
        limit = min(len(cached), len(tokens) - 1)  # the last prompt token is always evaluated
        n = 0
        while n < limit and cached[n] == tokens[n]:
            n += 1
        if not self._lib.llama_memory_seq_rm(self._memory, SEQ, n, -1):
            self._lib.llama_memory_clear(self._memory, True)
            n = 0
        del cached[n:]
        return n

    def _prefill(self, tokens: list[int], start: int, cancel: threading.Event) -> None:
        batch, size = self._prompt_batch, self._batch_size
        last = len(tokens) - 1
        for begin in range(start, len(tokens), size):
            chunk = tokens[begin : begin + size]
            for j, token in enumerate(chunk):
                batch.token[j] = token
                batch.pos[j] = begin + j
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = SEQ
                batch.logits[j] = begin + j == last
            batch.n_tokens = len(chunk)
            self._decode_batch(batch)
            self._cached.extend(chunk)
            if cancel.is_set():
                raise _Cancelled

    def _decode_batch(self, batch) -> None:
        status = self._lib.llama_decode(self._ctx, batch)
        if status != 0:
            self._lib.llama_memory_seq_rm(self._memory, SEQ, len(self._cached), -1)
            raise EngineError(f"llama_decode failed with status {status}")

    def _decode(
        self, pos: int, params: SamplingParams, cancel: threading.Event
    ) -> Iterator[Generated]:
        lib, ctx, vocab, piece = self._lib, self._ctx, self._vocab, self._piece
        sample, is_eog, to_piece = (
            lib.llama_sampler_sample,
            lib.llama_vocab_is_eog,
            lib.llama_token_to_piece,
        )
        string_at = ctypes.string_at
        batch = self._token_batch
        batch.n_tokens, batch.n_seq_id[0], batch.seq_id[0][0], batch.logits[0] = 1, 1, SEQ, 1
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        budget = min(params.max_tokens or self._n_ctx, self._n_ctx - pos)
        chain = self._sampler(params)
        gate = GrammarGate(lib, ctx, vocab, params.grammar) if params.grammar else None
        produced, reason = 0, "length"
        started = time.perf_counter()
        try:
            while produced < budget:
                token = sample(chain, ctx, -1)
                if gate is not None:
                    token = gate.choose(chain, token)
                if is_eog(vocab, token):
                    reason = "stop"
                    break
                produced += 1
                size = to_piece(vocab, token, piece, PIECE_BYTES, 0, True)
                text = utf8.decode(string_at(piece, size)) if size > 0 else ""
                if text:
                    yield text
                if cancel.is_set():
                    reason = "cancelled"
                    break
                if produced == budget:
                    break
                batch.token[0], batch.pos[0] = token, pos
                self._decode_batch(batch)
                self._cached.append(token)
                pos += 1
        finally:
            lib.llama_sampler_free(chain)
            if gate is not None:
                gate.free()
        tail = utf8.decode(b"", final=True)
        if tail:
            yield tail
        yield Finished(reason, produced, time.perf_counter() - started)

    # --- sampling ----------------------------------------------------------------------------

    def _sampler(self, params: SamplingParams):
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())

        def add(sampler) -> None:
            lib.llama_sampler_chain_add(chain, sampler)

        if params.ignore_eos:
            add(self._eog_bias())
        if params.repeat_penalty != 1.0:
            add(self._penalties(params))
        if params.temperature <= 0:
            add(lib.llama_sampler_init_greedy())
            return chain
        if params.top_k > 0:
            add(lib.llama_sampler_init_top_k(params.top_k))
        add(lib.llama_sampler_init_top_p(params.top_p, 1))
        add(lib.llama_sampler_init_min_p(params.min_p, 1))
        add(lib.llama_sampler_init_temp(params.temperature))
        seed = DEFAULT_SEED if params.seed is None else params.seed & 0xFFFFFFFF
        add(lib.llama_sampler_init_dist(seed))
        return chain

    def _penalties(self, params: SamplingParams):
        lib = self._lib
        sampler = lib.llama_sampler_init_penalties(
            params.repeat_last_n, params.repeat_penalty, 0.0, 0.0
        )
        for token in self._cached[-params.repeat_last_n :]:
            lib.llama_sampler_accept(sampler, token)
        return sampler

    def _eog_bias(self):
        lib = self._lib
        if self._eog_tokens is None:
            n_vocab = lib.llama_vocab_n_tokens(self._vocab)
            self._eog_tokens = [t for t in range(n_vocab) if lib.llama_vocab_is_eog(self._vocab, t)]
        biases = (lib.llama_logit_bias * len(self._eog_tokens))()
        for i, token in enumerate(self._eog_tokens):
            biases[i].token, biases[i].bias = token, float("-inf")
        n_vocab = lib.llama_vocab_n_tokens(self._vocab)
        return lib.llama_sampler_init_logit_bias(n_vocab, len(self._eog_tokens), biases)

    # --- embeddings --------------------------------------------------------------------------

    def embed(self, texts: list[str], normalize: bool, truncate: bool) -> tuple[list, int]:
        """Mean-pooled embeddings from a second context on the same (memory-mapped) weights."""
        embedder = self._embedding_context()
        n_ctx = embedder.n_ctx()
        counts = [len(embedder.tokenize(t.encode("utf-8"), add_bos=True)) for t in texts]
        if not truncate and max(counts, default=0) > n_ctx:
            raise InvalidRequestError(
                f"input of {max(counts)} tokens exceeds the context of {n_ctx}", "input"
            )
        try:
            vectors = embedder.embed(texts, normalize=normalize, truncate=truncate)
        except (RuntimeError, ValueError) as exc:
            raise InvalidRequestError(f"this model cannot produce embeddings: {exc}") from exc
        return vectors, sum(min(c, n_ctx) for c in counts)

    def _embedding_context(self):
        if self._embedder is None:
            n_ctx = min(self._n_ctx_train or 8192, 8192)
            try:
                self._embedder = self._lib.Llama(
                    model_path=str(self._path),
                    n_ctx=n_ctx,
                    n_batch=n_ctx,
                    n_ubatch=n_ctx,
                    n_threads=self._threads,
                    n_threads_batch=self._threads,
                    embedding=True,
                    pooling_type=self._lib.LLAMA_POOLING_TYPE_MEAN,
                    verbose=False,
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise InvalidRequestError(f"this model cannot produce embeddings: {exc}") from exc
        return self._embedder

    # --- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        if self._embedder is not None:
            self._embedder.close()
        self._lib.llama_batch_free(self._prompt_batch)
        self._lib.llama_batch_free(self._token_batch)
        self._llama.close()
