"""The benchmark's metric definitions, written once: what a generation's event timeline measures.

A `Timeline` is what a driver records for one generation, all times in seconds on one clock
(`time.perf_counter`): when the request was sent, when each content delta arrived, when the
stream ended, and the token counts the server reported. From it:

- TTFT (time to first token): first content delta, thinking included, minus the send time;
- TPOT (time per output token): (last delta - first delta) / (output tokens - 1), so the first
  token, which lands at TTFT, is excluded;
- ITL (inter-token latency): the gaps between consecutive content deltas;
- E2E (end-to-end latency): end of the stream minus the send time;
- prompt tok/s: prompt tokens / TTFT;
- decode tok/s: (output tokens - 1) / (last delta - first delta), that is 1 / TPOT;
- prefill tok/s (engines only): prompt tokens / (end of prefill - send time);
- throughput tok/s (a batch of concurrent requests): output tokens / (last end - first send);
- cache-read share: prompt tokens the server says it did not evaluate / prompt tokens;
- time to first byte: the first line of the response minus the send time.

Output tokens are the server's own count when it gives one, else the number of deltas. A sample
of values is summarized by its median, p90 and p99 (linear interpolation between ranks).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

# name -> True when a larger value is better
METRICS: dict[str, bool] = {
    "ttft_s": False,
    "tpot_s": False,
    "itl_s": False,
    "e2e_s": False,
    "prompt_tps": True,
    "decode_tps": True,
    "throughput_tps": True,  # a batch of concurrent requests: output tokens / wall time
    "pp_tps": True,  # engine scenario: prompt processing
    "tg_tps": True,  # engine scenario: token generation
    "cpu_per_token_s": False,  # CPU time the server process spent per output token
}

LABELS: dict[str, str] = {
    "ttft_s": "TTFT",
    "tpot_s": "TPOT",
    "itl_s": "ITL",
    "e2e_s": "E2E",
    "prompt_tps": "prompt tok/s",
    "decode_tps": "decode tok/s",
    "throughput_tps": "throughput tok/s",
    "pp_tps": "pp tok/s",
    "tg_tps": "tg tok/s",
    "cpu_per_token_s": "server CPU/token",
}


@dataclass
class Timeline:
    """What one streamed generation looked like from the client's side."""

    t_sent: float
    deltas: list[float] = field(default_factory=list)  # arrival time of each content delta
    t_end: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None  # as the server reported them
    t_prefilled: float | None = None  # end of prefill, where an engine reports it
    cached_tokens: int | None = None  # prompt tokens the server reports it did not evaluate
    t_first_byte: float | None = None  # arrival of the response's first line

    def delta(self, t: float) -> None:
        """Record a content (text or thinking) delta that arrived at ``t``."""
        self.deltas.append(t)

    @property
    def tokens(self) -> int:
        """Output tokens: the server's count when it gave one, else the delta count."""
        return self.output_tokens if self.output_tokens is not None else len(self.deltas)


def ttft(tl: Timeline) -> float | None:
    return tl.deltas[0] - tl.t_sent if tl.deltas else None


def decode_window(tl: Timeline) -> float | None:
    """Seconds from the first to the last content delta; None when there is no interval."""
    if len(tl.deltas) < 2 or tl.deltas[-1] <= tl.deltas[0]:
        return None
    return tl.deltas[-1] - tl.deltas[0]


def tpot(tl: Timeline) -> float | None:
    window = decode_window(tl)
    return None if window is None or tl.tokens < 2 else window / (tl.tokens - 1)


def decode_tps(tl: Timeline) -> float | None:
    window = decode_window(tl)
    return None if window is None or tl.tokens < 2 else (tl.tokens - 1) / window


def itl(tl: Timeline) -> list[float]:
    return [b - a for a, b in pairwise(tl.deltas)]


def e2e(tl: Timeline) -> float | None:
    end = tl.t_end if tl.t_end is not None else (tl.deltas[-1] if tl.deltas else None)
    return None if end is None else end - tl.t_sent


def prompt_tps(tl: Timeline) -> float | None:
    first = ttft(tl)
    if not tl.prompt_tokens or not first or first <= 0:
        return None
    return tl.prompt_tokens / first


def prefill_tps(tl: Timeline) -> float | None:
    """Prompt tokens over the time to the end of prefill (engines report it; HTTP does not)."""
    if not tl.prompt_tokens or tl.t_prefilled is None or tl.t_prefilled <= tl.t_sent:
        return None
    return tl.prompt_tokens / (tl.t_prefilled - tl.t_sent)


def cache_read_share(tl: Timeline) -> float | None:
    """Cached prompt tokens over all prompt tokens, where the server reports both."""
    if tl.cached_tokens is None or not tl.prompt_tokens:
        return None
    return tl.cached_tokens / tl.prompt_tokens


def first_byte(tl: Timeline) -> float | None:
    return None if tl.t_first_byte is None else tl.t_first_byte - tl.t_sent


def request_metrics(tl: Timeline) -> dict[str, float | None]:
    """The per-request metrics of one timeline (ITL is kept apart: it has many values)."""
    return {
        "ttft_s": ttft(tl),
        "tpot_s": tpot(tl),
        "e2e_s": e2e(tl),
        "prompt_tps": prompt_tps(tl),
        "decode_tps": decode_tps(tl),
    }


def throughput(timelines: Sequence[Timeline]) -> float | None:
    """Output tokens of a batch of requests over the wall time from first send to last end."""
    ends = [e + tl.t_sent for tl in timelines if (e := e2e(tl)) is not None]
    if not timelines or not ends:
        return None
    wall = max(ends) - min(tl.t_sent for tl in timelines)
    return sum(tl.tokens for tl in timelines) / wall if wall > 0 else None


def samples(timelines: Iterable[Timeline]) -> dict[str, list[float]]:
    """Every metric's values over a set of timelines; ITL pools the gaps of all of them."""
    out: dict[str, list[float]] = {name: [] for name in (*request_metrics(Timeline(0.0)), "itl_s")}
    for tl in timelines:
        for name, value in request_metrics(tl).items():
            if value is not None:
                out[name].append(value)
        out["itl_s"].extend(itl(tl))
    return out


# ---------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolating linearly between closest ranks."""
    if not values:
        raise ValueError("percentile of an empty sample")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(values: Sequence[float]) -> dict[str, float] | None:
    """Median, p10, p90, p99, min, max and count of a sample; None when it is empty."""
    if not values:
        return None
    return {
        "n": len(values),
        "median": percentile(values, 50),
        "p10": percentile(values, 10),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "min": min(values),
        "max": max(values),
    }


def relative_spread(values: Sequence[float]) -> float:
    """Half the p10-p90 width over the median: the run-to-run noise of a sample (0 if < 2)."""
    if len(values) < 2:
        return 0.0
    median = percentile(values, 50)
    if median == 0:
        return 0.0
    return (percentile(values, 90) - percentile(values, 10)) / 2 / abs(median)
