"""Scheduling for the llama.cpp engine: admission and continuous batching of several sequences
(slots) in one context.

One thread per loaded model runs `BatchLoop`. Each step it drops cancelled jobs, admits waiting
jobs into free slots (the prefix cache, engines/llamacpp_prefix.py, says which slot and what it
starts from), builds one llama_batch holding the next token of every decoding slot plus as many
prompt tokens of prefilling slots as fit (so a long prompt is prefilled in chunks and stalls the
other streams for one chunk at most), runs one llama_decode, and samples one token for each slot
that asked for logits. Per token and slot that is one sample in llama.cpp's sampler chain, one
detokenize into a reused buffer, one incremental UTF-8 decode and one `emit` call: nothing else.
At the end of a step each job's `deliver` is called once, handing the step's items on.

The waiting queue is shared with the threads that submit: it is touched only under `_wake`.
The slot lists (free, prefilling, decoding) belong to the decode thread and change only when a
job is admitted, ends or finishes its prefill.
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

from agentport.cache.disk import DiskTier
from agentport.core import SamplingParams
from agentport.engines.base import Finished, Prefilled
from agentport.engines.llamacpp_prefix import PrefixCache
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
    gate: object | None = None  # the compiled grammar gate (the slot frees it)
    deliver: Callable[[], None] | None = None  # hands the emitted items on, once per step
    submitted: float = field(default_factory=time.perf_counter)


class Slot:
    """One sequence of the context, and the state of the job it runs."""

    __slots__ = (
        "seq",
        "cached",
        "last_used",
        "job",
        "next_prompt",
        "chunk",
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
        "save",
    )

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.cached: list[int] = []  # the tokens this sequence holds in the KV cache
        self.last_used = 0.0
        self.job: Job | None = None

    def start(self, job: Job, reused: int, save: bool) -> None:
        self.job, self.reused, self.next_prompt, self.chunk = job, reused, reused, 0
        self.admitted = time.perf_counter()
        self.chain, self.gate, job.gate = None, job.gate, None
        self.utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self.produced, self.budget, self.next_token, self.logits_at = 0, 0, -1, -1
        self.decode_started = 0.0
        self.save = save

    @property
    def prefilling(self) -> bool:
        return self.next_prompt < len(self.job.tokens)


class BatchLoop:
    """The decode thread of one model. `engine.sampler(params, history)` builds a sampler
    chain; a job's grammar gate comes compiled with it."""

    def __init__(
        self,
        engine,
        parallel: int,
        n_ctx_seq: int,
        batch_size: int,
        disk: DiskTier | None = None,
        save_min_tokens: int = 1024,
    ) -> None:
        lib = engine.lib
        self._engine, self._lib = engine, lib
        self._ctx, self._vocab, self._memory = engine.ctx, engine.vocab, engine.memory
        self._slots = [Slot(seq) for seq in range(parallel)]
        self._free = list(self._slots)
        self._prefilling: list[Slot] = []  # in admission order
        self._decoding: list[Slot] = []
        self._ready: list[Slot] = []  # prefilled this step: they move to decoding
        self._ended: list[tuple[Slot, Job]] = []  # released this step: they move to free
        self._delivers: dict[Callable[[], None], int] = {}  # of the running jobs, with counts
        self._once: set[Callable[[], None]] = set()  # of jobs that ended outside a slot
        self._cache = PrefixCache(engine, disk, save_min_tokens)
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
        return len(self._slots) - len(self._free)

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
                while not (self._stopping or self._waiting or self._prefilling or self._decoding):
                    self._wake.wait()
                if self._stopping:
                    break
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
                log.exception("decode step failed")
                self._fail_all(EngineError(f"engine failed: {exc}"))
            self._hand_on()
        with self._wake:
            jobs = list(self._waiting)
            self._waiting.clear()
        for job in jobs:
            self._discard(job)
        for slot in self._prefilling + self._decoding:
            self._finish(slot, "cancelled")
        self._hand_on()

    def _hand_on(self) -> None:
        """The end of a step: deliver every job's items, free the slots of ended jobs."""
        for deliver in self._delivers:
            deliver()
        for deliver in self._once:
            if deliver not in self._delivers:
                deliver()
        self._once.clear()
        self._settle()

    def _settle(self) -> None:
        for slot, job in self._ended:
            (self._decoding if slot in self._decoding else self._prefilling).remove(slot)
            self._free.append(slot)
            if job.deliver is not None:
                self._delivers[job.deliver] -= 1
                if not self._delivers[job.deliver]:
                    del self._delivers[job.deliver]
                    self._once.add(job.deliver)  # its last items may still be filed
        self._ended.clear()

    def _step(self) -> None:
        self._drop_cancelled()
        self._admit()
        if not (self._prefilling or self._decoding):
            return
        self._fill_batch()
        status = self._lib.llama_decode(self._ctx, self._batch)
        if status != 0:
            error = EngineError(f"llama_decode failed with status {status}")
            for slot in self._decoding:
                self._error(slot, error)
            for slot in self._prefilling:
                if slot.chunk:
                    self._error(slot, error)
            return
        self._advance()
        for slot in self._decoding:
            self._sample(slot)
        for slot in self._ready:
            if slot.job is not None:
                self._sample(slot)
            if slot.job is not None:
                self._prefilling.remove(slot)
                self._decoding.append(slot)
        self._ready.clear()

    def _fill_batch(self) -> None:
        """The next token of every decoding slot, then prompt chunks while room is left."""
        batch, n, put = self._batch, 0, self._put
        for slot in self._decoding:
            n = put(batch, n, slot.next_token, len(slot.cached), slot.seq, True)
            slot.logits_at = n - 1
        for slot in self._prefilling:
            tokens, begin = slot.job.tokens, slot.next_prompt
            slot.chunk = max(min(self._batch_size - n, len(tokens) - begin), 0)
            last = len(tokens) - 1
            for pos in range(begin, begin + slot.chunk):
                n = put(batch, n, tokens[pos], pos, slot.seq, pos == last)
            slot.logits_at = n - 1 if begin + slot.chunk - 1 == last else -1
        batch.n_tokens = n

    def _advance(self) -> None:
        """After a decode: each slot holds what it was fed; prefilled prompts get ready."""
        for slot in self._decoding:
            slot.cached.append(slot.next_token)
        for slot in self._prefilling:
            if not slot.chunk:
                continue
            begin = slot.next_prompt
            slot.cached.extend(slot.job.tokens[begin : begin + slot.chunk])
            slot.next_prompt += slot.chunk
            if not slot.prefilling:
                self._prefilled(slot)
                if slot.job is not None:
                    self._ready.append(slot)

    @staticmethod
    def _put(batch, n: int, token: int, pos: int, seq: int, logits: bool) -> int:
        batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
        batch.seq_id[n][0], batch.logits[n] = seq, logits
        return n + 1

    # --- admission and cancellation ----------------------------------------------------------

    def _admit(self) -> None:
        while self._free:
            with self._wake:
                if not self._waiting:
                    return
                job = self._waiting.popleft()
            if job.cancel.is_set():
                self._discard(job)
                continue
            seq, reused, save = self._cache.place(job.tokens, self._slots)
            slot = self._slots[seq]
            self._free.remove(slot)
            slot.start(job, reused, save)
            self._prefilling.append(slot)
            if job.deliver is not None:
                self._delivers[job.deliver] = self._delivers.get(job.deliver, 0) + 1

    def _discard(self, job: Job) -> None:
        """End a job that never got a slot."""
        if job.gate is not None:
            job.gate.free()
        job.emit(Finished("cancelled", 0, 0.0))
        if job.deliver is not None:
            self._once.add(job.deliver)

    def _drop_cancelled(self) -> None:
        for running in (self._prefilling, self._decoding):
            for slot in running:
                if slot.job is not None and slot.job.cancel.is_set():
                    self._finish(slot, "cancelled")
        self._settle()  # their slots are free for this step's admissions
        with self._wake:
            cancelled = [job for job in self._waiting if job.cancel.is_set()]
            for job in cancelled:
                self._waiting.remove(job)
        for job in cancelled:
            self._discard(job)

    # --- per token ---------------------------------------------------------------------------

    def _prefilled(self, slot: Slot) -> None:
        job = slot.job
        now = time.perf_counter()
        self._cache.hold(slot)  # the whole prompt: other sessions may share it
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
        if slot.save:
            slot.save = False
            self._cache.save(slot)

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
        self._cache.hold(slot)
        self._ended.append((slot, job))
        return job

    def _fail_all(self, error: AgentportError) -> None:
        for slot in self._prefilling + self._decoding:
            if slot.job is None:
                continue
            self._lib.llama_memory_seq_rm(self._memory, slot.seq, 0, -1)
            slot.cached.clear()
            self._error(slot, error)
