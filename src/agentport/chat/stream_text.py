"""Helpers for scanning streamed text: hold back what may be the start of a marker."""

from __future__ import annotations


def partial_suffix(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of one of `markers`."""
    best = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), best, -1):
            if text.endswith(marker[:size]):
                best = size
                break
    return best


def find_first(text: str, markers: tuple[str, ...]) -> tuple[int, str]:
    """(index, marker) of the earliest marker in `text`, or (-1, "")."""
    found, which = -1, ""
    for marker in markers:
        index = text.find(marker)
        if index != -1 and (found == -1 or index < found):
            found, which = index, marker
    return found, which


class StopMatcher:
    """Cuts a text stream at the first of the client's stop sequences."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.pending = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        """Text safe to emit now; sets `matched` when a stop sequence is reached."""
        if not self.stops:
            return text
        self.pending += text
        index, marker = find_first(self.pending, self.stops)
        if index != -1:
            self.matched = marker
            out, self.pending = self.pending[:index], ""
            return out
        keep = partial_suffix(self.pending, self.stops)
        cut = len(self.pending) - keep
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out
