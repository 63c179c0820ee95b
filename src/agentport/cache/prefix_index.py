"""The prefix index: token sequences held by holders (engine sequences, disk entries) -> the
longest held prefix of a new prompt.

Tokens are grouped into blocks of BLOCK tokens; each full block is keyed by a hash chained over
every block before it, so a dictionary lookup per block walks the common prefix (the structure
vLLM's prefix caching uses; equivalent to a radix tree cut at block boundaries). The last partial
block is settled by comparing tokens with one holder. Index updates happen when a sequence is
admitted or finishes, never per generated token.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

BLOCK = 64


def block_keys(tokens: Sequence[int]) -> list[int]:
    """One chained key per full block of `tokens`."""
    keys, key = [], 0
    for start in range(0, len(tokens) - BLOCK + 1, BLOCK):
        key = hash((key, tuple(tokens[start : start + BLOCK])))
        keys.append(key)
    return keys


@dataclass(frozen=True, slots=True)
class Match:
    holder: Hashable
    length: int  # tokens of the prompt the holder has, from the start


class PrefixIndex:
    def __init__(self) -> None:
        self._tokens: dict[Hashable, list[int]] = {}
        self._keys: dict[Hashable, list[int]] = {}
        self._holders: dict[int, set[Hashable]] = {}

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, holder: Hashable) -> bool:
        return holder in self._tokens

    def holders(self) -> list[Hashable]:
        return list(self._tokens)

    def tokens(self, holder: Hashable) -> list[int]:
        return self._tokens.get(holder, [])

    def put(self, holder: Hashable, tokens: Sequence[int]) -> None:
        """`holder` now holds exactly `tokens` (a copy is kept)."""
        self.remove(holder)
        keys = block_keys(tokens)
        self._tokens[holder], self._keys[holder] = list(tokens), keys
        for key in keys:
            self._holders.setdefault(key, set()).add(holder)

    def remove(self, holder: Hashable) -> None:
        for key in self._keys.pop(holder, []):
            holders = self._holders.get(key)
            if holders is not None:
                holders.discard(holder)
                if not holders:
                    del self._holders[key]
        self._tokens.pop(holder, None)

    def longest(self, prompt: Sequence[int], among: set[Hashable] | None = None) -> Match | None:
        """The holder with the longest common prefix with `prompt`, among `among` if given."""
        lengths = self.shared(prompt, among)
        if not lengths:
            return None
        holder = max(lengths, key=lengths.__getitem__)
        return Match(holder, lengths[holder])

    def shared(self, prompt: Sequence[int], among: set[Hashable] | None = None) -> dict:
        """Each holder's (among `among`, if given) common prefix length with `prompt`, found in
        one walk of the prompt's blocks."""
        candidates = set(self._tokens) if among is None else among & set(self._tokens)
        lengths: dict[Hashable, int] = {}
        blocks = 0
        for key in block_keys(prompt):
            if not candidates:
                break
            holding = self._holders.get(key, set()) & candidates
            for holder in candidates - holding:
                lengths[holder] = self._settle(holder, prompt, blocks * BLOCK)
            candidates, blocks = holding, blocks + 1
        for holder in candidates:
            lengths[holder] = self._settle(holder, prompt, blocks * BLOCK)
        return lengths

    def _settle(self, holder: Hashable, prompt: Sequence[int], start: int) -> int:
        """The common prefix of `holder` and `prompt`, whose first `start` tokens' blocks
        matched by key."""
        held = self._tokens[holder]
        if held[:start] != list(prompt[:start]):  # a hash collision: never trust it
            start = 0
        return _common(held, prompt, start)


def _common(held: Sequence[int], prompt: Sequence[int], start: int) -> int:
    """The length of the common prefix, knowing the first `start` tokens agree."""
    n, limit = start, min(len(held), len(prompt))
    while n < limit and held[n] == prompt[n]:
        n += 1
    return n
