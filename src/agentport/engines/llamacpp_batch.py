"""Continuous batching for the llama.cpp engine: several sequences (slots) in one context.

One thread per loaded model runs `BatchLoop`. Each step it admits waiting jobs into free slots,
builds one llama_batch holding the next token of every decoding slot plus as many prompt tokens of
prefilling slots as fit (so a long prompt is prefilled in chunks and stalls the other streams for
one chunk at most), runs one llama_decode, and samples one token for each slot that asked for
logits. Per token and slot that is one sample in llama.cpp's sampler chain, one detokenize into a
reused buffer, one incremental UTF-8 decode and one `emit` call: nothing else.

Each slot remembers the tokens its sequence holds in the KV cache; a new job takes the free slot
sharing the longest prefix with its prompt, so an agent's next turn evaluates only the new tokens.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from agentport.core import SamplingParams
from agentport.engines.base import Finished, Prefilled
from agentport.errors import AgentportError, EngineError

log = logging.getLogger("agentport.engine")

PIECE_BYTES = 256
Emit = Callable[[object], None]


@dataclass(eq=False, slots=True)
class Job:
    """One generation request, as submitted by the runtime."""

    tokens: list[int]
    params: SamplingParams
    emit: Emit  # receives Prefilled, str pieces, then Finished (or an AgentportError)
    cancel: threading.Event
    submitted: float = field(default_factory=time.perf_counter)


class Slot:
    """One sequence of the context, and the state of the job it runs."""

    __slots__ = (
        "seq",
        "cached",
        "last_used",
        "job",
        "next_prompt",
        "reused",
        "admitted",
        "chain",
        "gate",
        "utf8",
        "produced",
        "budget",
        "next_token",
        "logits_at",
        "decode_started",
    )

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.cached: list[int] = []  # the tokens this sequence holds in the KV cache
        self.last_used = 0.0
        self.job: Job | None = None

    def start(self, job: Job, reused: int) -> None:
        self.job, self.reused, self.next_prompt = job, reused, reused
        self.admitted = time.perf_counter()
        self.chain = self.gate = None
        self.utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self.produced, self.budget, self.next_token, self.logits_at = 0, 0, -1, -1
        self.decode_started = 0.0

    @property
    def prefilling(self) -> bool:
        return self.next_prompt < len(self.job.tokens)


def common_prefix(a: list[int], b: list[int]) -> int:
    n, limit = 0, min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


class BatchLoop:
    """The decode thread of one model. `sampler(params, history)` builds a sampler chain and
    `gate(params, logits_index)` a grammar gate (or None); both come from the engine."""

    def __init__(self, engine, parallel: int, n_ctx_seq: int, batch_size: int) -> None:
        lib = engine.lib
        self._engine, self._lib = engine, lib
        self._ctx, self._vocab, self._memory = engine.ctx, engine.vocab, engine.memory
        self._slots = [Slot(seq) for seq in range(parallel)]
        self._n_ctx_seq, self._batch_size = n_ctx_seq, batch_size
        self._batch = lib.llama_batch_init(batch_size, 0, 1)
        self._piece = ctypes.create_string_buffer(PIECE_BYTES)
        self._waiting: deque[Job] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="engine-batch", daemon=True)
        self._thread.start()

    # --- the runtime's side ------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        with self._wake:
            self._waiting.append(job)
            self._wake.notify()

    @property
    def busy_slots(self) -> int:
        return sum(slot.job is not None for slot in self._slots)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join()
        self._lib.llama_batch_free(self._batch)

    # --- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self._waiting and not self._active():
                    self._wake.wait()
                if self._stopping:
                    break
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
                log.exception("decode step failed")
                self._fail_all(EngineError(f"engine failed: {exc}"))
        for job in self._drain_waiting():
            job.emit(Finished("cancelled", 0, 0.0))
        for slot in self._active():
            self._finish(slot, "cancelled")

    def _active(self) -> list[Slot]:
        return [slot for slot in self._slots if slot.job is not None]

    def _drain_waiting(self) -> list[Job]:
        with self._wake:
            jobs = list(self._waiting)
            self._waiting.clear()
        return jobs

    def _step(self) -> None:
        self._drop_cancelled()
        self._admit()
        active = self._active()
        if not active:
            return
        batch, n = self._batch, 0
        decoding = [slot for slot in active if not slot.prefilling]
        for slot in decoding:
            n = self._put(batch, n, slot.next_token, len(slot.cached), slot.seq, True)
            slot.logits_at = n - 1
        chunks: list[tuple[Slot, list[int]]] = []
        for slot in active:
            room = self._batch_size - n
            if room <= 0:
                break
            if slot in decoding:
                continue
            tokens = slot.job.tokens
            begin, last = slot.next_prompt, len(tokens) - 1
            chunk = tokens[begin : begin + room]
            for j, token in enumerate(chunk):
                n = self._put(batch, n, token, begin + j, slot.seq, begin + j == last)
            slot.logits_at = n - 1 if begin + len(chunk) - 1 == last else -1
            chunks.append((slot, chunk))
        batch.n_tokens = n
        status = self._lib.llama_decode(self._ctx, batch)
        if status != 0:
            failed = decoding + [slot for slot, _ in chunks]
            for slot in failed:
                self._error(slot, EngineError(f"llama_decode failed with status {status}"))
            return
        for slot in decoding:
            slot.cached.append(slot.next_token)
        for slot, chunk in chunks:
            slot.cached.extend(chunk)
            slot.next_prompt += len(chunk)
            if not slot.prefilling:
                self._prefilled(slot)
        for slot in decoding:
            self._sample(slot)
        for slot, _ in chunks:
            if slot.job is not None and slot.logits_at >= 0:
                self._sample(slot)

    @staticmethod
    def _put(batch, n: int, token: int, pos: int, seq: int, logits: bool) -> int:
        batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
        batch.seq_id[n][0], batch.logits[n] = seq, logits
        return n + 1

    # --- admission and cancellation ----------------------------------------------------------

    def _admit(self) -> None:
        while True:
            free = [slot for slot in self._slots if slot.job is None]
            if not free:
                return
            with self._wake:
                if not self._waiting:
                    return
                job = self._waiting.popleft()
            if job.cancel.is_set():
                job.emit(Finished("cancelled", 0, 0.0))
                continue
            self._assign(job, free)

    def _assign(self, job: Job, free: list[Slot]) -> None:
        tokens = job.tokens
        best = max(free, key=lambda s: (common_prefix(s.cached, tokens), -s.last_used))
        reused = min(common_prefix(best.cached, tokens), len(tokens) - 1)
        if not self._lib.llama_memory_seq_rm(self._memory, best.seq, reused, -1):
            self._lib.llama_memory_seq_rm(self._memory, best.seq, 0, -1)
            reused = 0
        del best.cached[reused:]
        best.start(job, reused)

    def _drop_cancelled(self) -> None:
        for slot in self._slots:
            if slot.job is not None and slot.job.cancel.is_set():
                self._finish(slot, "cancelled")
        if any(job.cancel.is_set() for job in self._waiting):
            with self._wake:
                cancelled = [job for job in self._waiting if job.cancel.is_set()]
                for job in cancelled:
                    self._waiting.remove(job)
            for job in cancelled:
                job.emit(Finished("cancelled", 0, 0.0))

    # --- per token ---------------------------------------------------------------------------

    def _prefilled(self, slot: Slot) -> None:
        job = slot.job
        now = time.perf_counter()
        job.emit(
            Prefilled(
                len(job.tokens), slot.reused, now - slot.admitted, slot.admitted - job.submitted
            )
        )
        params = job.params
        room = self._n_ctx_seq - len(job.tokens)
        slot.budget = min(params.max_tokens or room, room)
        try:
            slot.chain = self._engine.sampler(params, slot.cached)
            slot.gate = self._engine.gate(params)
        except AgentportError as error:
            self._error(slot, error)
            return
        slot.decode_started = now
        if slot.budget <= 0:
            self._finish(slot, "length")

    def _sample(self, slot: Slot) -> None:
        lib, vocab = self._lib, self._vocab
        token = lib.llama_sampler_sample(slot.chain, self._ctx, slot.logits_at)
        if slot.gate is not None:
            token = slot.gate.choose(slot.chain, token, slot.logits_at)
        if lib.llama_vocab_is_eog(vocab, token):
            self._finish(slot, "stop")
            return
        slot.produced += 1
        size = lib.llama_token_to_piece(vocab, token, self._piece, PIECE_BYTES, 0, True)
        if size > 0:
            text = slot.utf8.decode(ctypes.string_at(self._piece, size))
            if text:
                slot.job.emit(text)
        if slot.produced >= slot.budget:
            self._finish(slot, "length")
        else:
            slot.next_token = token

    def _finish(self, slot: Slot, reason: str) -> None:
        job = self._release(slot)
        tail = slot.utf8.decode(b"", final=True)
        if tail:
            job.emit(tail)
        seconds = time.perf_counter() - slot.decode_started if slot.decode_started else 0.0
        job.emit(Finished(reason, slot.produced, seconds))

    def _error(self, slot: Slot, error: AgentportError) -> None:
        job = self._release(slot)
        self._lib.llama_memory_seq_rm(self._memory, slot.seq, len(slot.cached), -1)
        job.emit(error)

    def _release(self, slot: Slot) -> Job:
        job = slot.job
        if slot.chain is not None:
            self._lib.llama_sampler_free(slot.chain)
        if slot.gate is not None:
            slot.gate.free()
        slot.chain = slot.gate = slot.job = None
        slot.last_used = time.perf_counter()
        return job

    def _fail_all(self, error: AgentportError) -> None:
        for slot in self._active():
            self._lib.llama_memory_seq_rm(self._memory, slot.seq, 0, -1)
            slot.cached.clear()
            self._error(slot, error)
