"""Pure formatting for the command line's tables: sizes, ids, times and context lengths.

Sizes and relative times follow Ollama's wording ("98 MB", "5 minutes ago", "forever").
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

_UNITS = (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("KB", 1000))
_FRACTION = re.compile(r"(\.\d{6})\d+")
FOREVER_YEARS = 20


def human_bytes(size: int | None) -> str:
    """A byte count in decimal units: 512 B, 1.5 KB, 98 MB, 4.7 GB."""
    if size is None:
        return "-"
    for unit, scale in _UNITS:
        if size >= scale:
            value = size / scale
            if value >= 10 or value == int(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{size} B"


def short_id(digest: str | None) -> str:
    """The first 12 hex characters of a digest, without its `sha256:` prefix."""
    if not digest:
        return "-"
    return digest.removeprefix("sha256:")[:12]


def context_text(model: dict[str, Any]) -> str:
    """`32768`, or `32768 (yarn x4.0 from 8192)` when the context is rope-scaled."""
    length = model.get("context_length")
    if not length:
        return "-"
    scaling = model.get("rope_scaling")
    return f"{length} ({scaling})" if scaling else str(length)


def slots_text(model: dict[str, Any]) -> str:
    """`2/4 busy`, `4/4 busy +3 queued`, or `-` when the server does not say."""
    slots = model.get("slots")
    if not isinstance(slots, dict) or not slots.get("total"):
        return "-"
    text = f"{slots.get('busy', 0)}/{slots['total']} busy"
    waiting = slots.get("waiting") or 0
    return f"{text} +{waiting} queued" if waiting else text


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time (`Z` and nanoseconds allowed) as an aware datetime; None if absent."""
    if not value:
        return None
    text = _FRACTION.sub(r"\1", value.strip())
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def human_time(value: str | None, now: datetime | None = None, never: str = "forever") -> str:
    """`5 minutes ago`, `29 minutes from now`; `never` when absent or decades ahead."""
    moment = parse_time(value)
    if moment is None:
        return never
    delta = (now or datetime.now(timezone.utc)) - moment
    if delta < timedelta(0):
        if -delta > timedelta(days=365 * FOREVER_YEARS):
            return never
        return f"{human_duration(-delta)} from now"
    return f"{human_duration(delta)} ago"


def human_duration(delta: timedelta) -> str:
    """A duration in words, rounded down to its largest unit."""
    seconds = int(delta.total_seconds())
    if seconds < 1:
        return "less than a second"
    if seconds < 60:
        return "1 second" if seconds == 1 else f"{seconds} seconds"
    minutes = seconds // 60
    if minutes < 60:
        return "about a minute" if minutes == 1 else f"{minutes} minutes"
    return _human_hours(round(seconds / 3600))


def _human_hours(hours: int) -> str:
    if hours == 1:
        return "about an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 14:
        return f"{hours // 24} days"
    if hours < 24 * 60:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"
