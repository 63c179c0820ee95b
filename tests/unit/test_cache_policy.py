"""The prefix cache's policy, table-driven: which sequence a prompt runs on and what it starts
from (its own prefix, a copy, a disk restore, nothing), and whether a prefix is saved."""

from __future__ import annotations

import pytest

from agentport.cache.policy import (
    COPY_GAIN,
    CUT_SLACK,
    DISK_GAIN,
    Decision,
    DiskOffer,
    SeqView,
    decide,
    worth_saving,
)

P = 5000  # the prompt's length in tokens: up to P - 1 are reusable


def seq(n: int, held: int = 0, shared: int = 0, busy: bool = False, used: float = 0.0):
    return SeqView(n, held, shared, busy, used)


@pytest.mark.parametrize(
    ("seqs", "disk", "expected"),
    [
        # all empty: the first one, from nothing
        ([seq(0), seq(1)], None, Decision(0, 0)),
        # every sequence busy: none
        ([seq(0, busy=True)], None, None),
        # its own session continuing: the whole history is the prompt's start
        ([seq(0), seq(1, 3000, 3000, used=5)], None, Decision(1, 3000)),
        # a re-rendered end within the slack: still in place
        ([seq(0), seq(1, 3000 + CUT_SLACK, 3000, used=5)], None, Decision(1, 3000)),
        # the whole prompt held: the last token is evaluated again, for its logits
        ([seq(0, 6000, 6000)], None, Decision(0, P - 1)),
        # another session's history shares the system prompt: copied into the empty one
        ([seq(0), seq(1, 9000, 2000, used=5)], None, Decision(0, 2000, copy_from=1)),
        # ... unless no empty sequence is left: then cut in place
        ([seq(0, 800, 0, used=1), seq(1, 9000, 2000, used=5)], None, Decision(1, 2000)),
        # a short shared prefix is not worth a copy: the empty one, from nothing
        ([seq(0), seq(1, 9000, COPY_GAIN - 1, used=5)], None, Decision(0, 0)),
        # of several parked histories, the one that loses least
        (
            [seq(0), seq(1, 9000, 2000, used=5), seq(2, 2100, 2000, used=1)],
            None,
            Decision(2, 2000),
        ),
        # no shared prefix anywhere: the empty sequence before any parked history
        ([seq(0, 900, 0, used=1), seq(1), seq(2, 50, 0)], None, Decision(1, 0)),
        # no empty sequence: the least recently used
        ([seq(0, 900, 0, used=9), seq(1, 900, 0, used=2)], None, Decision(1, 0)),
        # a busy session holds much more: copied into a free sequence
        (
            [seq(0, busy=True, held=4000, shared=3000), seq(1, 500, 500)],
            None,
            Decision(1, 3000, copy_from=0),
        ),
        # ... not when it gains less than COPY_GAIN
        (
            [seq(0, busy=True, held=4000, shared=500 + COPY_GAIN - 1), seq(1, 500, 500)],
            None,
            Decision(1, 500),
        ),
        # the disk holds more than any sequence: restored
        ([seq(0), seq(1)], DiskOffer("k", 4000), Decision(0, 4000, restore="k")),
        # ... into a spare sequence, keeping a parked history whole
        (
            [seq(0), seq(1, 1000, 1000)],
            DiskOffer("k", 4000),
            Decision(0, 4000, restore="k", fallback=0),
        ),
        # ... into the reused sequence when it is the only free one (its own as the fallback)
        (
            [seq(0, 1000, 1000), seq(1, busy=True)],
            DiskOffer("k", 4000),
            Decision(0, 4000, restore="k", fallback=1000),
        ),
        # ... not when it gains less than DISK_GAIN
        ([seq(0, 1000, 1000)], DiskOffer("k", 1000 + DISK_GAIN - 1), Decision(0, 1000)),
    ],
)
def test_decide(seqs, disk, expected):
    assert decide(P, seqs, disk) == expected


@pytest.mark.parametrize(
    ("reuse", "save_min", "saves"),
    [(3000, 1024, True), (1000, 1024, False), (3000, None, False)],
)
def test_a_reuse_past_the_floor_is_saved_when_the_disk_tier_is_on(reuse, save_min, saves):
    decision = decide(P, [seq(0, reuse, reuse)], None, save_min)
    assert decision.reuse == reuse and decision.save is saves


@pytest.mark.parametrize(
    ("prefix", "on_disk", "worth"),
    [(4000, 0, True), (4000, 3500, False), (4000, 2900, True), (100, 0, False)],
)
def test_worth_saving(prefix, on_disk, worth):
    assert worth_saving(prefix, on_disk) is worth
