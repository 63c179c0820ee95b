"""The prefix cache on llama.cpp's sequences: describes the sequences to the pure policy
(cache/policy.py) and carries out its decision (reuse in place, copy another sequence's cells,
restore a disk entry, cut the rest) and its saves to the disk tier.

Each sequence's tokens are kept in the prefix index (cache/prefix_index.py) when a job is
admitted, when its prompt is prefilled and when it ends, never per generated token.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Protocol

from agentport.cache import stats
from agentport.cache.disk import DiskTier
from agentport.cache.policy import Decision, DiskOffer, SeqView, decide, worth_saving
from agentport.cache.prefix_index import PrefixIndex


class HeldSequence(Protocol):
    seq: int
    cached: list[int]  # the tokens this sequence holds in the KV cache
    last_used: float
    job: object | None


class PrefixCache:
    def __init__(self, engine, disk: DiskTier | None, save_min_tokens: int) -> None:
        self._lib, self._ctx, self._memory = engine.lib, engine.ctx, engine.memory
        self._index = PrefixIndex()
        self._disk, self._save_min = disk, save_min_tokens
        if disk is not None:
            for key, entry in disk.entries.items():
                self._index.put(("disk", key), entry.tokens)

    def hold(self, slot: HeldSequence) -> None:
        """Remember what `slot` holds now (its prompt prefilled, or its job ended)."""
        self._index.put(slot.seq, slot.cached)

    # --- admission ---------------------------------------------------------------------------

    def place(self, tokens: list[int], slots: Sequence[HeldSequence]) -> tuple[int, int, bool]:
        """(sequence, tokens reused, save when done) for a prompt; its sequence now holds the
        reused prefix and nothing after it. Call only with a free sequence."""
        lengths = self._index.shared(tokens)
        views = [
            SeqView(s.seq, len(s.cached), lengths.get(s.seq, 0), s.job is not None, s.last_used)
            for s in slots
        ]
        decision = decide(len(tokens), views, self._disk_offer(lengths), self._save_floor())
        target = slots[decision.target]
        reused = self._carry_out(decision, target, slots)
        if len(target.cached) > reused and reused < len(tokens) - 1:
            stats.EVICTIONS.inc()
        if not self._lib.llama_memory_seq_rm(self._memory, target.seq, reused, -1):
            self._lib.llama_memory_seq_rm(self._memory, target.seq, 0, -1)
            reused = 0
        del target.cached[reused:]
        self.hold(target)
        (stats.HITS if reused else stats.MISSES).inc()
        stats.TOKENS_REUSED.inc(reused)
        stats.TOKENS_EVALUATED.inc(len(tokens) - reused)
        # Saved when the job ends (prompt and answer, the next turn's prefix), after its last
        # event; never at admission: a copy's cells only arrive with the next decode.
        return target.seq, reused, decision.save

    def _save_floor(self) -> int | None:
        return self._save_min if self._disk is not None else None

    def _disk_offer(self, lengths: dict) -> DiskOffer | None:
        offers = [(n, h[1]) for h, n in lengths.items() if isinstance(h, tuple) and n > 0]
        if not offers:
            return None
        shared, key = max(offers)
        return DiskOffer(key, shared)

    def _carry_out(self, decision: Decision, target: HeldSequence, slots) -> int:
        if decision.copy_from is not None:
            self._copy(slots[decision.copy_from], target, decision.reuse)
        elif decision.restore is not None:
            return self._restore(decision, target)
        return decision.reuse

    def _copy(self, source: HeldSequence, target: HeldSequence, length: int) -> None:
        """Copy `source`'s cells (another session's) into `target`; `length` tokens are shared."""
        self._lib.llama_memory_seq_rm(self._memory, target.seq, 0, -1)
        self._lib.llama_memory_seq_cp(self._memory, source.seq, target.seq, -1, -1)
        target.cached = source.cached[:length]
        stats.COPIES.inc()

    def _restore(self, decision: Decision, target: HeldSequence) -> int:
        """Load a disk entry into `target`; on failure, what `target` still holds."""
        entry = self._disk.entries.get(decision.restore)
        restored = entry is not None and self._disk.restore(
            entry, lambda path: self._load_state(path, target.seq, len(entry.tokens))
        )
        if not restored:  # the file was damaged: removed, and the target may be empty now
            self._index.remove(("disk", decision.restore))
            stats.DISK_REJECTS.inc()
            if target.cached and self._lib.llama_memory_seq_pos_max(self._memory, target.seq) >= 0:
                return decision.fallback
            target.cached = []
            return 0
        target.cached = list(entry.tokens[: decision.reuse])
        stats.DISK_RESTORES.inc()
        return decision.reuse

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

    # --- the disk tier -----------------------------------------------------------------------

    def save(self, slot: HeldSequence) -> None:
        """Save what `slot` holds to the disk tier, unless the tier holds most of it."""
        prefix = list(slot.cached)
        disk_holders = {("disk", key) for key in self._disk.entries}
        on_disk = self._index.longest(prefix, among=disk_holders)
        if not worth_saving(len(prefix), on_disk.length if on_disk else 0):
            return
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
