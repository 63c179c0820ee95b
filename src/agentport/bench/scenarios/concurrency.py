"""The concurrency scenario: a compare run at each stream count N (1, 2, 4, 8 by default), every
started server decoding N sequences at once (ours `AGENTPORT_PARALLEL=N`, llama-server
`--parallel N -c <ctx x N>`), each round N requests released together.

Each N gives an ordinary compare record; the scaling table puts them side by side: per N and
target the median aggregate throughput and TTFT, the throughput as a ratio to the reference and
as a multiple of the same target's one-stream throughput, and issue 5's bar at 4 streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from agentport.bench.prompts import stderr_log
from agentport.bench.report import markdown_table, median_of, ratio_to_reference
from agentport.bench.scenarios.load import HttpRun, LoadConfig, Log, run_http

BAR_STREAMS, BAR_RATIO = 4, 0.9  # issue 5: ours at 4 streams >= 0.9 x the reference


@dataclass
class ConcurrencyConfig:
    streams: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    tokens: int = 64
    prompt_words: int = 100
    rounds: int = 3
    warmup: int = 1
    max_foreign: float | None = None


def run_concurrency(run: HttpRun, cfg: ConcurrencyConfig, log: Log = stderr_log) -> list[dict]:
    """One compare record per stream count, servers started afresh for each."""
    records = []
    for n in cfg.streams:
        load = LoadConfig(
            n, n, cfg.tokens, cfg.prompt_words, cfg.rounds, cfg.warmup, cfg.max_foreign
        )
        at_n = replace(run, server=replace(run.server, parallel=n))
        records.append(run_http("concurrency", at_n, load, log))
    return records


def _streams(record: dict) -> int:
    return int(record["config"]["concurrency"])


def scaling_rows(records: Sequence[dict]) -> tuple[list[str], list[list]]:
    """Headers and one row per (stream count, target)."""
    one = {
        name: median_of(r, name, "throughput_tps")
        for r in records
        if _streams(r) == 1
        for name in r["results"]
    }
    headers = ["streams", "target", "throughput tok/s", "ratio", "scaling vs 1", "TTFT ms"]
    rows = []
    for record in sorted(records, key=_streams):
        for name in record["results"]:
            rate = median_of(record, name, "throughput_tps")
            ttft = median_of(record, name, "ttft_s")
            base = one.get(name)
            rows.append([
                _streams(record), name, rate,
                ratio_to_reference(record, name, "throughput_tps"),
                rate / base if rate is not None and base else None,
                None if ttft is None else ttft * 1000,
            ])  # fmt: skip
    return headers, rows


def acceptance_line(records: Sequence[dict], target: str = "agentport") -> str | None:
    """Issue 5's bar at 4 streams: ``target`` >= 0.9 x the reference, and above its own rate
    at one stream."""
    at = {_streams(r): r for r in records}
    if BAR_STREAMS not in at or 1 not in at:
        return None
    ratio = ratio_to_reference(at[BAR_STREAMS], target, "throughput_tps")
    four = median_of(at[BAR_STREAMS], target, "throughput_tps")
    one = median_of(at[1], target, "throughput_tps")
    if ratio is None or four is None or not one:
        return None
    met = ratio >= BAR_RATIO and four / one > 1
    return (
        f"At {BAR_STREAMS} streams: {target} / {at[1].get('reference')} = {ratio:.2f} "
        f"(bar {BAR_RATIO:.2f}), {target} {BAR_STREAMS} / 1 stream = {four / one:.2f} "
        f"(bar > 1.00): {'met' if met else 'NOT met'}."
    )


def render_scaling(records: Sequence[dict]) -> str:
    """The scaling table and the acceptance line."""
    headers, rows = scaling_rows(records)
    lines = [
        "Concurrency: aggregate throughput per stream count.",
        "",
        markdown_table(headers, rows),
    ]
    if line := acceptance_line(records):
        lines += ["", line]
    return "\n".join(lines) + "\n"
