"""The prefix cache's policy, pure: for a new prompt, which sequence runs it and what it starts
from (its own cached prefix, a copy of another sequence's, a disk entry restored, or nothing),
whether the prefix it ends with is saved to disk, and whether a prefix is worth a disk file.

The engine describes its sequences (`SeqView`: what each holds, how much of it the prompt
shares, whether a job runs on it, when it was last used) and the best disk entry; `decide`
returns a `Decision` that the engine's batch loop carries out. A free sequence's history belongs
to a session that may come back for its next turn, so it is reused in place only when little of
it would be cut (its own session continuing) or no empty sequence is left; otherwise the shared
part is copied into an empty sequence and the history stays whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

COPY_GAIN = 128  # tokens a copy from another sequence must save over what the target offers
DISK_GAIN = 128  # tokens a disk restore must save over what the sequences offer
CUT_SLACK = 256  # tokens of a parked history a reuse in place may cut (its own re-rendered end)


@dataclass(frozen=True, slots=True)
class SeqView:
    seq: int
    held: int  # tokens the sequence holds in the KV cache
    shared: int  # of them, how many from the start are the prompt's first tokens
    busy: bool  # a job runs on it
    last_used: float


@dataclass(frozen=True, slots=True)
class DiskOffer:
    key: str
    shared: int  # the prompt's first tokens the entry holds


@dataclass(frozen=True, slots=True)
class Decision:
    target: int  # the sequence that runs the job
    reuse: int  # prompt tokens it starts from (the rest is prefilled)
    copy_from: int | None = None  # first copy this sequence's cells into the target
    restore: str | None = None  # first restore this disk entry into the target
    fallback: int = 0  # what the target reuses of its own cells should the restore fail
    save: bool = False  # save the target's prefix to disk when the job ends


def decide(
    prompt_tokens: int,
    seqs: Sequence[SeqView],
    disk: DiskOffer | None = None,
    save_min: int | None = None,
) -> Decision | None:
    """Where a prompt of `prompt_tokens` runs; None when no sequence is free. `save_min`: the
    reuse from which a prefix is saved to disk (None: no disk tier)."""
    free = [s for s in seqs if not s.busy]
    if not free:
        return None
    limit = prompt_tokens - 1  # the last prompt token is always evaluated, for its logits
    spare = min(free, key=lambda s: (s.held > 0, s.last_used, s.seq))  # empty, else LRU
    target, reuse, copy_from = _free_choice(free, spare, limit)
    live = max((s for s in seqs if s.busy), key=lambda s: s.shared, default=None)
    if live is not None and min(live.shared, limit) >= reuse + COPY_GAIN:
        target, reuse, copy_from = spare, min(live.shared, limit), live.seq
    if disk is None or min(disk.shared, limit) < reuse + DISK_GAIN:
        return Decision(target.seq, reuse, copy_from, save=_saves(reuse, save_min))
    if copy_from is None and reuse > 0:
        target = spare  # a restore replaces all the target holds: keep a history whole
    reuse = min(disk.shared, limit)
    fallback = min(target.shared, limit)
    return Decision(target.seq, reuse, None, disk.key, fallback, _saves(reuse, save_min))


def _saves(reuse: int, save_min: int | None) -> bool:
    return save_min is not None and reuse >= save_min


def _free_choice(
    free: list[SeqView], spare: SeqView, limit: int
) -> tuple[SeqView, int, int | None]:
    """(target, reuse, copy source) among the free sequences alone."""
    own = max(free, key=lambda s: (min(s.shared, limit), -(s.held - s.shared), -s.seq))
    reuse = min(own.shared, limit)
    if reuse == 0:
        return spare, 0, None
    if own.held - reuse <= CUT_SLACK or spare.held > 0:
        return own, reuse, None  # its own session continuing, or no empty sequence is left
    if reuse >= COPY_GAIN:
        return spare, reuse, own.seq
    return spare, 0, None


def worth_saving(prefix_tokens: int, on_disk: int) -> bool:
    """Whether a prefix of `prefix_tokens` deserves a disk file when the disk tier already
    holds `on_disk` of its first tokens."""
    return prefix_tokens - on_disk >= max(DISK_GAIN, prefix_tokens // 4)
