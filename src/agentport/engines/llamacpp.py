"""llama.cpp through llama-cpp-python: loading, tokenization, sampling, embeddings.

The model and one context are created through llama-cpp-python's thin wrappers over the C API;
generation then runs in `BatchLoop` (engines/llamacpp_scheduling.py), which serves `parallel`
sequences of `n_ctx` tokens each from that one context with continuous batching. Sampling is
llama.cpp's own sampler chain; grammars go through `GrammarGate`, compiled by `constrain` on the
caller's worker thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentport.cache.disk import DiskTier
from agentport.core import SamplingParams
from agentport.engines import llamacpp_vocab as vocab_text
from agentport.engines.base import Constraint, EngineInfo, SlotUse
from agentport.engines.llamacpp_grammar import GrammarGate, VocabTables, grammar_compiles
from agentport.engines.llamacpp_memory import ReportedMemory, capture_reported_memory
from agentport.engines.llamacpp_scheduling import BatchLoop, Emit, Job
from agentport.errors import InvalidRequestError, ModelLoadError
from agentport.planner.gguf_meta import ModelShape, read_shape

log = logging.getLogger("agentport.engine")

DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp: pick a random seed
KV_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}  # ggml type ids


@dataclass(slots=True)
class EngineOptions:
    n_ctx: int = 32768  # per sequence
    parallel: int = 1  # sequences served at once
    kv_type: str = "f16"
    yarn_factor: float = 1.0  # > 1: extend the trained context with YaRN
    threads: int = 0
    batch_size: int = 512
    flash_attention: bool = True
    metadata_cache: Path | None = None  # where parsed GGUF headers are remembered
    prefix_cache_dir: Path | None = None  # the disk tier of the prefix cache; None: off
    prefix_cache_bytes: int = 0  # its budget
    prefix_cache_min_tokens: int = 1024  # reused prefixes this long are saved to disk


def default_threads() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


class LlamaCppEngine:
    def __init__(self, path: Path, options: EngineOptions) -> None:
        import llama_cpp
        from llama_cpp._logger import set_verbose

        set_verbose(False)  # llama.cpp's load log goes to stderr otherwise
        self.lib = llama_cpp
        shape = read_shape(path, options.metadata_cache)
        threads = options.threads or default_threads()
        with capture_reported_memory() as reported:
            self._model, self._context = self._load(path, options, threads, shape)
        self.reported_memory: ReportedMemory = reported
        self.ctx, self.memory = self._context.ctx, self._context.memory
        self.vocab = self._model.vocab
        self._eog_tokens: list[int] | None = None
        self._path, self._options, self._threads = path, options, threads
        self._n_ctx_train = shape.n_ctx_train
        self._embedder = None
        self._tables: dict = {}  # the vocabulary's tables for grammars, built on first use
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.info = self._describe(shape, options, threads)
        self._loop = BatchLoop(
            self,
            options.parallel,
            options.n_ctx,
            self.batch_size(options),
            disk=self._disk_tier(path, options),
            save_min_tokens=options.prefix_cache_min_tokens,
        )

    @staticmethod
    def _disk_tier(path: Path, options: EngineOptions) -> DiskTier | None:
        """Entries are keyed by the weights (a blob's name is its digest) and by every setting
        that changes what the KV cells hold."""
        if options.prefix_cache_dir is None or options.prefix_cache_bytes <= 0:
            return None
        stat = path.stat()
        model_key = path.name if path.name.startswith("sha256-") else f"{path.stem}-{stat.st_size}"
        settings_key = (
            f"ctx{options.n_ctx}-{options.kv_type}-yarn{options.yarn_factor:g}"
            f"-fa{int(options.flash_attention)}"
        )
        return DiskTier(
            options.prefix_cache_dir, model_key, settings_key, options.prefix_cache_bytes
        )

    @staticmethod
    def batch_size(options: EngineOptions) -> int:
        """Tokens per engine step: room for one token of every sequence at least."""
        return max(options.batch_size, options.parallel)

    def _load(self, path: Path, options: EngineOptions, threads: int, shape: ModelShape):
        lib = self.lib
        from llama_cpp import _internals

        model_params = lib.llama_model_default_params()
        if lib.llama_supports_gpu_offload():
            model_params.n_gpu_layers = 999
        params = lib.llama_context_default_params()
        params.n_ctx = options.n_ctx * options.parallel
        params.n_seq_max = options.parallel
        params.kv_unified = False  # each sequence owns its n_ctx cells
        params.n_batch = params.n_ubatch = self.batch_size(options)
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = (
            lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if options.flash_attention
            else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.type_k = params.type_v = KV_TYPES[options.kv_type]
        if options.yarn_factor > 1.0:
            params.rope_scaling_type = lib.LLAMA_ROPE_SCALING_TYPE_YARN
            params.rope_freq_scale = 1.0 / options.yarn_factor
            params.yarn_orig_ctx = shape.n_ctx_train
        model = None
        try:
            model = _internals.LlamaModel(path_model=str(path), params=model_params, verbose=False)
            context = _internals.LlamaContext(model=model, params=params, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            if model is not None:
                model.close()
            raise ModelLoadError(f"llama.cpp could not load {path.name}: {exc}") from exc
        return model, context

    def _describe(self, shape: ModelShape, options: EngineOptions, threads: int) -> EngineInfo:
        metadata = self._model.metadata()
        yarn = options.yarn_factor
        return EngineInfo(
            n_ctx=options.n_ctx,
            n_ctx_train=shape.n_ctx_train,
            rope_scaling=f"yarn x{yarn:g} from {shape.n_ctx_train}" if yarn > 1.0 else None,
            chat_template=metadata.get("tokenizer.chat_template"),
            bos_token=vocab_text.token_text(self._model, self.lib.llama_vocab_bos(self.vocab)),
            eos_token=vocab_text.token_text(self._model, self.lib.llama_vocab_eos(self.vocab)),
            file_size=shape.file_size,
            architecture=shape.architecture,
            quantization=shape.quantization,
            parameter_count=shape.parameter_count,
            threads=threads,
            metadata={k: v for k, v in metadata.items() if len(v) < 2048},
            fim_tokens=vocab_text.fim_texts(self.lib, self._model, self.vocab),
            control_texts=vocab_text.control_texts(self.lib, self._model, self.vocab),
            parallel=options.parallel,
            kv_type=options.kv_type,
        )

    # --- tokens ------------------------------------------------------------------------------

    def tokenize(self, text: str, special: bool = True, start: bool = True) -> list[int]:
        add_bos = vocab_text.wants_bos(self._add_bos, self.info.bos_token, text, start)
        return vocab_text.tokenize(self._model, text, special, add_bos)

    # --- generation --------------------------------------------------------------------------

    def submit(
        self,
        tokens: list[int],
        params: SamplingParams,
        emit: Emit,
        cancel: threading.Event,
        constraint: Constraint | None = None,
        deliver: Callable[[], None] | None = None,
    ) -> None:
        """Queue a generation; `emit` is called from the decode thread with each item, and
        `deliver` once at the end of each step."""
        gate = (constraint or self.constrain(params)).gate
        self._loop.submit(Job(tokens, params, emit, cancel, gate, deliver))

    def slot_use(self) -> SlotUse:
        return SlotUse(self._loop.busy_slots, self._loop.waiting)

    def grammar_compiles(self, grammar: str) -> bool:
        return grammar_compiles(grammar)

    def constrain(self, params: SamplingParams) -> Constraint:
        return Constraint(self.gate(params))

    def gate(self, params: SamplingParams) -> GrammarGate | None:
        """The grammar gate for `params`; None without a grammar or where llama.cpp cannot
        compile it (the answer is then unconstrained and the parser decides). Blocking: on a
        worker thread."""
        if not params.grammar:
            return None

        def single_token(text: str) -> int | None:
            tokens = self._model.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            return tokens[0] if len(tokens) == 1 else None

        tables = VocabTables.shared(self.lib, self.vocab, self._tables)
        return GrammarGate.create(self.lib, self.ctx, self.vocab, tables, params, single_token)

    # --- sampling ----------------------------------------------------------------------------

    def sampler(self, params: SamplingParams, history: list[int]):
        """A sampler chain for `params`; the penalties see the last tokens of `history`."""
        lib = self.lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())

        def add(sampler) -> None:
            lib.llama_sampler_chain_add(chain, sampler)

        if params.ignore_eos:
            add(self._eog_bias())
        if params.repeat_penalty != 1.0:
            add(self._penalties(params, history))
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

    def _penalties(self, params: SamplingParams, history: list[int]):
        lib = self.lib
        sampler = lib.llama_sampler_init_penalties(
            params.repeat_last_n, params.repeat_penalty, 0.0, 0.0
        )
        for token in history[-params.repeat_last_n :]:
            lib.llama_sampler_accept(sampler, token)
        return sampler

    def _eog_bias(self):
        lib = self.lib
        if self._eog_tokens is None:
            n_vocab = lib.llama_vocab_n_tokens(self.vocab)
            self._eog_tokens = [t for t in range(n_vocab) if lib.llama_vocab_is_eog(self.vocab, t)]
        biases = (lib.llama_logit_bias * len(self._eog_tokens))()
        for i, token in enumerate(self._eog_tokens):
            biases[i].token, biases[i].bias = token, float("-inf")
        n_vocab = lib.llama_vocab_n_tokens(self.vocab)
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
                self._embedder = self.lib.Llama(
                    model_path=str(self._path),
                    n_ctx=n_ctx,
                    n_batch=n_ctx,
                    n_ubatch=n_ctx,
                    n_threads=self._threads,
                    n_threads_batch=self._threads,
                    embedding=True,
                    pooling_type=self.lib.LLAMA_POOLING_TYPE_MEAN,
                    verbose=False,
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise InvalidRequestError(f"this model cannot produce embeddings: {exc}") from exc
        return self._embedder

    # --- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        self._loop.stop()
        if self._embedder is not None:
            self._embedder.close()
        self._context.close()
        self._model.close()
