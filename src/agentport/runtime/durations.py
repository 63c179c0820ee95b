"""Keep-alive durations in Ollama's forms: "30s", "5m", "1h30m", seconds as a number, 0, -1."""

from __future__ import annotations

import re

from agentport.errors import InvalidRequestError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_keep_alive(value: str | float | int | None) -> float | None:
    """Seconds to keep a model loaded; None means forever (a negative value)."""
    if value is None:
        raise InvalidRequestError("keep_alive: missing value")
    if isinstance(value, (int, float)):
        return None if value < 0 else float(value)
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return _parse_text(text)
    return None if number < 0 else number


def _parse_text(text: str) -> float | None:
    if text.startswith("-"):
        return None
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidRequestError(f"keep_alive: invalid duration '{text[:32]}'", "keep_alive")
    return sum(float(n) * _UNITS[u] for n, u in parts)
