"""Continuous batching for the llama.cpp engine: several sequences (slots) in one context.

One thread per loaded model runs `BatchLoop`. Each step it admits waiting jobs into free slots,
builds one llama_batch holding the next token of every decoding slot plus as many prompt tokens of
prefilling slots as fit (so a long prompt is prefilled in chunks and stalls the other streams for
one chunk at most), runs one llama_decode, and samples one token for each slot that asked for
logits. Per token and slot that is one sample in llama.cpp's sampler chain, one detokenize into a
reused buffer, one incremental UTF-8 decode and one `emit` call: nothing else.

Each slot remembers the tokens its sequence holds in the KV cache, and the prefix index
(cache/prefix_index.py) finds the longest of them for a new prompt. A new job takes the free slot
that holds it; when a busy slot (another session) holds a longer one, its cells are copied into
a free slot; when the disk tier holds a longer one still, it is restored from disk. Reused
prefixes of some size are saved to the disk tier, so they survive a restart.
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

from agentport.cache import stats
from agentport.cache.disk import DiskTier
from agentport.cache.prefix_index import Match, PrefixIndex
from agentport.core import SamplingParams
from agentport.engines.base import Finished, Prefilled
from agentport.errors import AgentportError, EngineError

log = logging.getLogger("agentport.engine")

PIECE_BYTES = 256
COPY_GAIN = 128  # tokens a copy from another sequence must save over a free slot's own prefix
DISK_GAIN = 128  # tokens a disk restore must save over what the sequences offer
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
        "save",
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
        self.save = False

    @property
    def prefilling(self) -> bool:
        return self.next_prompt < len(self.job.tokens)


class BatchLoop:
    """The decode thread of one model. `sampler(params, history)` builds a sampler chain and
    `gate(params, logits_index)` a grammar gate (or None); both come from the engine."""

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
        self._index = PrefixIndex()
        self._disk, self._save_min = disk, save_min_tokens
        if disk is not None:
            for key, entry in disk.entries.items():
                self._index.put(("disk", key), entry.tokens)
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
        tokens, limit = job.tokens, len(job.tokens) - 1
        free_ids = {slot.seq for slot in free}
        own = self._index.longest(tokens, among=free_ids)
        target = self._slots[own.holder] if own and own.length else self._oldest(free)
        reused = min(own.length, limit) if own and own.holder == target.seq else 0
        live = self._index.longest(tokens, among={s.seq for s in self._slots} - free_ids)
        if live and min(live.length, limit) >= reused + COPY_GAIN:
            target = self._oldest(free)
            reused = self._copy(self._slots[live.holder], target, min(live.length, limit))
        disk = self._disk_match(tokens)
        if disk and min(disk.length, limit) >= reused + DISK_GAIN:
            reused = self._restore(disk, target, min(disk.length, limit), reused)
        if len(target.cached) > reused and reused < limit:
            stats.EVICTIONS.inc(bool(target.cached[reused:]))
        if not self._lib.llama_memory_seq_rm(self._memory, target.seq, reused, -1):
            self._lib.llama_memory_seq_rm(self._memory, target.seq, 0, -1)
            reused = 0
        del target.cached[reused:]
        self._index.put(target.seq, target.cached)
        (stats.HITS if reused else stats.MISSES).inc()
        stats.TOKENS_REUSED.inc(reused)
        stats.TOKENS_EVALUATED.inc(len(tokens) - reused)
        target.start(job, reused)
        # Saved when the job ends (prompt and answer, the next turn's prefix), after its last
        # event; never at admission: a copy's cells only arrive with the next decode.
        target.save = reused >= self._save_min and self._disk is not None

    @staticmethod
    def _oldest(free: list[Slot]) -> Slot:
        return min(free, key=lambda slot: (bool(slot.cached), slot.last_used))

    def _copy(self, source: Slot, target: Slot, length: int) -> int:
        """Copy `source`'s cells (another session's) into `target`; `length` tokens are shared."""
        self._lib.llama_memory_seq_rm(self._memory, target.seq, 0, -1)
        self._lib.llama_memory_seq_cp(self._memory, source.seq, target.seq, -1, -1)
        target.cached = source.cached[:length]
        stats.COPIES.inc()
        return length

    def _disk_match(self, tokens: list[int]) -> Match | None:
        if self._disk is None or not self._disk.entries:
            return None
        return self._index.longest(tokens, among={("disk", key) for key in self._disk.entries})

    def _restore(self, match: Match, target: Slot, length: int, fallback: int) -> int:
        """Load a disk entry into `target`; on failure, what `target` still holds."""
        entry = self._disk.entries.get(match.holder[1])
        restored = entry is not None and self._disk.restore(
            entry, lambda path: self._load_state(path, target.seq, len(entry.tokens))
        )
        if not restored:  # the file was damaged: removed, and the target may be empty now
            self._index.remove(match.holder)
            stats.DISK_REJECTS.inc()
            if target.cached and self._lib.llama_memory_seq_pos_max(self._memory, target.seq) >= 0:
                return fallback
            target.cached = []
            return 0
        target.cached = list(entry.tokens[:length])
        stats.DISK_RESTORES.inc()
        return length

    def _load_state(self, path, seq: int, capacity: int) -> list[int] | None:
        lib = self._lib
        lib.llama_memory_seq_rm(self._memory, seq, 0, -1)
        tokens = (lib.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        read = lib.llama_state_seq_load_file(
            self._ctx, str(path).encode(), seq, tokens, capacity, ctypes.byref(count)
        )
        if read == 0:
            lib.llama_memory_seq_rm(self._memory, seq, 0, -1)
            return None
        return list(tokens[: count.value])

    def _save(self, slot: Slot) -> None:
        prefix = list(slot.cached)
        on_disk = self._disk_match(prefix)
        uncovered = len(prefix) - (on_disk.length if on_disk else 0)
        if uncovered < max(DISK_GAIN, len(prefix) // 4):
            return  # the disk tier holds most of it: not worth another file
        lib = self._lib

        def write(path) -> bool:
            array = (lib.llama_token * len(prefix))(*prefix)
            size = lib.llama_state_seq_save_file(
                self._ctx, str(path).encode(), slot.seq, array, len(prefix)
            )
            return size > 0

        entry = self._disk.save(prefix, write)
        if entry is not None:
            self._index.put(("disk", entry.key), entry.tokens)
            stats.DISK_SAVES.inc()
        for holder in self._index.holders():  # entries the disk budget removed
            if isinstance(holder, tuple) and holder[1] not in self._disk.entries:
                self._index.remove(holder)

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
        self._index.put(slot.seq, slot.cached)  # the whole prompt: other sessions may share it
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
        if slot.save:
            slot.save = False
            self._save(slot)

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
        self._index.put(slot.seq, slot.cached)
        return job

    def _fail_all(self, error: AgentportError) -> None:
        for slot in self._active():
            self._lib.llama_memory_seq_rm(self._memory, slot.seq, 0, -1)
            slot.cached.clear()
            self._error(slot, error)
