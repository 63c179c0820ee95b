"""The regression gate: does a run fall behind a recorded one by more than noise allows?

For every target both records measured and every gated metric, the gate takes the ratio of the
medians (this run / the recorded run) and turns it into a regression: 1 - ratio for a rate,
ratio - 1 for a latency. The run-to-run spread of a metric is the larger of the two samples'
relative spread (half their p10-p90 width over the median). A metric fails when

    regression > max regression + spread

so a slowdown inside the noise of either run never fails, and one beyond it does. Where both
records have a reference target (compare), each target's rate relative to the reference is gated
as well, with the spread of its per-round ratios: that number is immune to a machine that is
slower or busier as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agentport.bench.metrics import LABELS, METRICS, percentile, relative_spread
from agentport.bench.report import markdown_table, round_ratios
from agentport.errors import InvalidRequestError

GATED = ("decode_tps", "tg_tps", "pp_tps", "throughput_tps", "ttft_s", "cpu_per_token_s")


@dataclass(frozen=True)
class GateItem:
    target: str
    metric: str  # a metric name, or "<metric> / <reference>" for a ratio
    baseline: float
    current: float
    regression: float  # > 0: worse than the baseline, as a fraction
    allowed: float  # threshold + spread

    @property
    def failed(self) -> bool:
        return self.regression > self.allowed


@dataclass(frozen=True)
class GateResult:
    items: list[GateItem]
    threshold: float

    @property
    def failed(self) -> bool:
        return any(item.failed for item in self.items)


def parse_threshold(text: str) -> float:
    """A regression threshold from `5%` or `0.05`."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError as exc:
        raise InvalidRequestError(f"not a regression threshold: {text!r} (try 5%)") from exc
    if not 0 <= value < 1:
        raise InvalidRequestError(f"the regression threshold must be in [0%, 100%): {text!r}")
    return value


def regression(baseline: float, current: float, higher_is_better: bool) -> float:
    """How much worse ``current`` is than ``baseline``, as a fraction (negative: better)."""
    ratio = current / baseline
    return 1 - ratio if higher_is_better else ratio - 1


def compare_samples(
    target: str,
    metric: str,
    base: Sequence[float],
    cur: Sequence[float],
    threshold: float,
    higher_is_better: bool,
) -> GateItem | None:
    """One gate item from two samples; None when either is empty or the baseline is zero."""
    if not base or not cur:
        return None
    b, c = percentile(base, 50), percentile(cur, 50)
    if b == 0:
        return None
    spread = max(relative_spread(base), relative_spread(cur))
    return GateItem(target, metric, b, c, regression(b, c, higher_is_better), threshold + spread)


def gate(current: dict, baseline: dict, threshold: float) -> GateResult:
    """Gate ``current`` against ``baseline`` (two records) at ``threshold`` (0.05 = 5 %)."""
    items: list[GateItem] = []
    for target, result in current["results"].items():
        base = baseline["results"].get(target)
        if base is None:
            continue
        for metric in GATED:
            item = compare_samples(
                target,
                metric,
                base["samples"].get(metric) or [],
                result["samples"].get(metric) or [],
                threshold,
                METRICS[metric],
            )
            if item:
                items.append(item)
        items += _ratio_items(current, baseline, target, threshold)
    if not items:
        raise InvalidRequestError("the baseline record shares no target and metric with this run")
    return GateResult(items, threshold)


def _ratio_items(current: dict, baseline: dict, target: str, threshold: float) -> list[GateItem]:
    reference = current.get("reference")
    if not reference or target == reference or baseline.get("reference") != reference:
        return []
    items = []
    for metric in GATED:
        if not METRICS[metric]:
            continue
        base, cur = round_ratios(baseline, target, metric), round_ratios(current, target, metric)
        label = f"{metric} / {reference}"
        if item := compare_samples(target, label, base, cur, threshold, True):
            items.append(item)
    return items


def render(result: GateResult) -> str:
    """The gate's table and its verdict."""
    headers = ["target", "metric", "baseline", "this run", "regression", "allowed", "verdict"]
    rows = [
        [
            item.target,
            _label(item.metric),
            _shown(item.metric, item.baseline),
            _shown(item.metric, item.current),
            f"{item.regression:+.1%}",
            f"{item.allowed:.1%}",
            "FAIL" if item.failed else "ok",
        ]
        for item in result.items
    ]
    verdict = "FAILED" if result.failed else "passed"
    failed = [f"{i.target} {_label(i.metric)}" for i in result.items if i.failed]
    tail = f": {', '.join(failed)}" if failed else ""
    line = f"Regression gate (max {result.threshold:.0%} beyond the run-to-run spread): {verdict}"
    return markdown_table(headers, rows) + "\n\n" + line + tail + ".\n"


def _shown(metric: str, value: float) -> str:
    """A value as the table shows it: latencies (``*_s``) in milliseconds."""
    if metric.endswith("_s"):
        return f"{value * 1000:.1f} ms"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _label(metric: str) -> str:
    name, _, reference = metric.partition(" / ")
    return LABELS.get(name, name) + (f" / {reference}" if reference else "")
