"""MLX through mlx-lm: the reference engine for benchmarks, and opt-in behind the same API.

It loads GGUF files whose tensors MLX reads natively (engines/mlx_gguf.py: llama family, Q4_0,
Q4_1, Q8_0, F16, F32, with the GGUF's own tokenizer through llama.cpp) and mlx-community model
directories (config.json, safetensors and a Hugging Face tokenizer, through mlx-lm). On Linux it
runs on `mlx[cpu]`, on Apple Silicon on Metal.

One sequence at a time: a single worker thread takes jobs in order, prefills the prompt (reusing
the KV cache of the longest common prefix with the previous job), then samples token by token.
Per token: one model step, one sample, one incremental detokenize, one `emit`. Grammars are
llama.cpp's: a request that needs one is refused; a lazy grammar (tool_choice auto) is left out
and the parser decides, as the llama.cpp engine does with a grammar it cannot compile.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agentport.core import SamplingParams
from agentport.engines.base import Constraint, EngineInfo, Finished, Prefilled, SlotUse
from agentport.errors import (
    AgentportError,
    EngineError,
    InvalidRequestError,
    ModelLoadError,
    PromptTooLongError,
)

log = logging.getLogger("agentport.engine")

Emit = Callable[[object], None]
GRAMMAR_REFUSED = "grammars need the llama.cpp engine"


@dataclass(slots=True)
class MlxOptions:
    n_ctx: int = 32768  # the context limit: prompt plus output
    yarn_factor: float = 1.0  # > 1: extend the trained context with YaRN (GGUF files)
    prefill_step: int = 512  # prompt tokens evaluated per model call
    metadata_cache: Path | None = None  # where parsed GGUF headers are remembered


class Vocab(Protocol):
    """A tokenizer with one reused streaming decoder: `start`, then `piece` per token."""

    bos_token: str
    eos_token: str
    eog: list[int]
    chat_template: str | None

    def tokenize(self, text: str, special: bool = True, start: bool = True) -> list[int]: ...
    def start(self) -> None: ...
    def piece(self, token: int) -> str: ...
    def flush(self) -> str: ...
    def close(self) -> None: ...


@dataclass(eq=False, slots=True)
class _Job:
    tokens: list[int]
    params: SamplingParams
    emit: Emit
    cancel: threading.Event
    submitted: float


class MlxEngine:
    def __init__(self, path: Path, options: MlxOptions) -> None:
        try:
            import mlx.core as mx
        except ImportError as exc:
            raise ModelLoadError(
                "the MLX engine needs the mlx extra: pip install 'agentport[mlx]'"
            ) from exc
        self._mx = mx
        self._options = options
        self._vocab: Vocab
        if path.is_dir():
            self._model, self._vocab, self.info = _load_directory(path, options)
        else:
            self._model, self._vocab, self.info = _load_gguf(path, options)
        self._cache: list | None = None
        self._held: list[int] = []  # the tokens the KV cache holds
        self._eog_mask = None  # -inf at the end-of-generation tokens, for ignore_eos
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._busy = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-mlx", daemon=True)
        self._thread.start()

    # --- the runtime's side ------------------------------------------------------------------

    def tokenize(self, text: str, special: bool = True, start: bool = True) -> list[int]:
        return self._vocab.tokenize(text, special, start)

    def grammar_compiles(self, grammar: str) -> bool:
        """True: MLX applies no grammar (it refuses a request that needs one and leaves a lazy
        one out), so no grammar needs relaxing for it."""
        return True

    def constrain(self, params: SamplingParams) -> Constraint:
        return Constraint(None)  # the grammar is judged by the worker, in _generate

    def submit(
        self,
        tokens: list[int],
        params: SamplingParams,
        emit: Emit,
        cancel: threading.Event,
        constraint: Constraint | None = None,
        deliver: Callable[[], None] | None = None,
    ) -> None:
        """Queue a generation; `emit` is called from the worker thread with each item. One
        sequence: each item is its step's, so `deliver` follows every `emit`."""
        if deliver is not None:
            emit = _delivering(emit, deliver)
        self._jobs.put(_Job(tokens, params, emit, cancel, time.perf_counter()))

    def slot_use(self) -> SlotUse:
        return SlotUse(int(self._busy), self._jobs.qsize())

    def embed(self, texts: list[str], normalize: bool, truncate: bool) -> tuple[list, int]:
        raise InvalidRequestError("embeddings need the llama.cpp engine")

    def close(self) -> None:
        """Cancel what runs and waits, then free the model."""
        self._stopping.set()
        self._jobs.put(None)
        self._thread.join()
        self._vocab.close()
        self._model = self._cache = None
        self._mx.clear_cache()

    # --- the worker thread -------------------------------------------------------------------

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._busy = True
            try:
                self._generate(job)
            except AgentportError as error:
                job.emit(error)
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any one failure
                log.exception("MLX generation failed")
                self._cache, self._held = None, []
                job.emit(EngineError(f"engine failed: {exc}"))
            finally:
                self._busy = False

    def _generate(self, job: _Job) -> None:
        params, cancel = job.params, job.cancel
        if cancel.is_set() or self._stopping.is_set():
            job.emit(Finished("cancelled", 0, 0.0))
            return
        if params.grammar is not None and not params.grammar_triggers:
            raise InvalidRequestError(GRAMMAR_REFUSED)
        room = self._options.n_ctx - len(job.tokens)
        if room <= 0:
            raise PromptTooLongError(len(job.tokens), self._options.n_ctx)
        admitted = time.perf_counter()
        reused = self._reuse(job.tokens)
        logits = self._prefill(job.tokens[reused:], cancel)
        if logits is None:
            job.emit(Finished("cancelled", 0, 0.0))
            return
        choose = self._chooser(params, logits.shape[-1])
        token = choose(logits, self._held)
        self._mx.eval(token)
        now = time.perf_counter()
        job.emit(Prefilled(len(job.tokens), reused, now - admitted, admitted - job.submitted))
        budget = min(params.max_tokens or room, room)
        self._decode(job, token, choose, budget, now)

    def _decode(self, job: _Job, token, choose, budget: int, started: float) -> None:
        """Sample until end of generation, the budget or a cancel; the next step is queued
        before the current token is detokenized, so the two overlap."""
        mx, vocab, emit, held = self._mx, self._vocab, job.emit, self._held
        cancel, stopping = job.cancel, self._stopping
        eog = set(vocab.eog)
        vocab.start()
        produced, reason = 0, "stop"
        while True:
            value = token.item()
            if value in eog:
                break
            produced += 1
            last = produced >= budget
            if not last:
                held.append(value)
                token = choose(self._step(token), held)
                mx.async_eval(token)
            text = vocab.piece(value)
            if text:
                emit(text)
            if last:
                reason = "length"
                break
            if cancel.is_set() or stopping.is_set():
                reason = "cancelled"
                break
        tail = vocab.flush()
        if tail:
            emit(tail)
        emit(Finished(reason, produced, time.perf_counter() - started))

    def _step(self, token):
        return self._model(token[None], cache=self._cache)[:, -1, :]

    def _prefill(self, tokens: list[int], cancel: threading.Event):
        """The logits after `tokens`, fed in chunks; None once cancelled."""
        mx, step = self._mx, self._options.prefill_step
        while len(tokens) > step:
            chunk, tokens = tokens[:step], tokens[step:]
            self._model(mx.array(chunk)[None], cache=self._cache)
            mx.eval([c.state for c in self._cache])
            self._held.extend(chunk)
            if cancel.is_set():
                return None
        self._held.extend(tokens)
        return self._model(mx.array(tokens)[None], cache=self._cache)[:, -1, :]

    def _reuse(self, tokens: list[int]) -> int:
        """Keep the cached prefix the prompt shares (all but its last token at most)."""
        from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

        held = self._held
        shared = min(_common_prefix(held, tokens), len(tokens) - 1)
        extra = len(held) - shared
        if self._cache is None or (extra and not can_trim_prompt_cache(self._cache)):
            self._cache, shared = make_prompt_cache(self._model), 0
        elif extra:
            trim_prompt_cache(self._cache, extra)
        del held[shared:]
        return shared

    def _chooser(self, params: SamplingParams, n_vocab: int):
        """choose(logits, history) -> the next token (lazy), for `params`."""
        from mlx_lm.sample_utils import make_repetition_penalty, make_sampler

        mx = self._mx
        mask = self._end_mask(n_vocab) if params.ignore_eos and self._vocab.eog else None
        penalty, window = None, params.repeat_last_n
        if params.repeat_penalty != 1.0 and window != 0:
            window = window if window > 0 else self._options.n_ctx  # -1: the whole context
            penalty = make_repetition_penalty(params.repeat_penalty, window)
        greedy = params.temperature <= 0
        if not greedy:
            if params.seed is not None:
                mx.random.seed(params.seed & 0xFFFFFFFF)
            sampler = make_sampler(
                params.temperature, params.top_p, params.min_p, top_k=max(params.top_k, 0)
            )

        def choose(logits, history: list[int]):
            if mask is not None:
                logits = logits + mask
            if penalty is not None:
                logits = penalty(mx.array(history[-window:]), logits)
            if greedy:
                return mx.argmax(logits, axis=-1)
            return sampler(logits - mx.logsumexp(logits, axis=-1, keepdims=True))

        return choose

    def _end_mask(self, n_vocab: int):
        """Added to the logits, it keeps end-of-generation tokens from being sampled."""
        mx = self._mx
        if self._eog_mask is None or self._eog_mask.shape[-1] != n_vocab:
            mask = mx.zeros((n_vocab,), dtype=mx.float32)
            mask[mx.array(self._vocab.eog)] = float("-inf")
            self._eog_mask = mask
        return self._eog_mask


def _delivering(emit: Emit, deliver: Callable[[], None]) -> Emit:
    def emit_and_deliver(item: object) -> None:
        emit(item)
        deliver()

    return emit_and_deliver


def _common_prefix(a: list[int], b: list[int]) -> int:
    n, limit = 0, min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


# --- loading ---------------------------------------------------------------------------------


def _load_gguf(path: Path, options: MlxOptions):
    from agentport.engines.mlx_gguf import GgufVocab, load_gguf_model
    from agentport.planner.gguf_meta import read_shape

    shape = read_shape(path, options.metadata_cache)
    vocab = GgufVocab(path)
    try:
        model = load_gguf_model(path, options.yarn_factor)
    except BaseException:
        vocab.close()
        raise
    yarn = options.yarn_factor
    info = EngineInfo(
        n_ctx=options.n_ctx,
        n_ctx_train=shape.n_ctx_train,
        rope_scaling=f"yarn x{yarn:g} from {shape.n_ctx_train}" if yarn > 1.0 else None,
        chat_template=vocab.chat_template,
        bos_token=vocab.bos_token,
        eos_token=vocab.eos_token,
        file_size=shape.file_size,
        architecture=shape.architecture,
        quantization=shape.quantization,
        parameter_count=shape.parameter_count,
        metadata={k: v for k, v in vocab.metadata.items() if len(v) < 2048},
        fim_tokens=vocab.fim_tokens(),
        control_texts=vocab.control_texts(),
    )
    return model, vocab, info


def _load_directory(path: Path, options: MlxOptions):
    from mlx_lm.utils import get_total_parameters, load

    try:
        model, tokenizer, config = load(str(path), return_config=True)
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise ModelLoadError(f"mlx-lm could not load the model directory {path.name}") from exc
    vocab = HfVocab(tokenizer)
    quantization = config.get("quantization") or {}
    info = EngineInfo(
        n_ctx=options.n_ctx,
        n_ctx_train=int(config.get("max_position_embeddings") or 0),
        rope_scaling=None,
        chat_template=vocab.chat_template,
        bos_token=vocab.bos_token,
        eos_token=vocab.eos_token,
        file_size=sum(f.stat().st_size for f in path.glob("*.safetensors")),
        architecture=str(config.get("model_type", "")),
        quantization=f"{quantization['bits']}-bit" if "bits" in quantization else "",
        parameter_count=get_total_parameters(model),
        control_texts=tuple(getattr(tokenizer, "all_special_tokens", ())),
    )
    return model, vocab, info


class HfVocab:
    """An mlx-lm TokenizerWrapper (Hugging Face tokenizer) with its streaming detokenizer."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        self._detokenizer = tokenizer.detokenizer
        self.bos_token = tokenizer.bos_token or ""
        self.eos_token = tokenizer.eos_token or ""
        self.eog = sorted(tokenizer.eos_token_ids)
        self.chat_template = getattr(tokenizer, "chat_template", None)

    def tokenize(self, text: str, special: bool = True, start: bool = True) -> list[int]:
        """Hugging Face tokenizers parse special tokens' strings unless told to split them."""
        bos = self.bos_token
        add = start and not (bos and text.startswith(bos))
        if special:
            return self._tokenizer.encode(text, add_special_tokens=add)
        return self._tokenizer.encode(text, add_special_tokens=add, split_special_tokens=True)

    def start(self) -> None:
        self._detokenizer.reset()

    def piece(self, token: int) -> str:
        self._detokenizer.add_token(token)
        return self._detokenizer.last_segment

    def flush(self) -> str:
        self._detokenizer.finalize()
        return self._detokenizer.last_segment

    def close(self) -> None:
        pass
