"""Tests of bench/concurrency.py's pure logic: round metrics, medians over rounds, the report."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load_concurrency():
    sys.path.insert(0, str(_BENCH))  # the script imports its siblings (common, decode) by name
    try:
        return importlib.import_module("concurrency")
    finally:
        sys.path.remove(str(_BENCH))


bench = _load_concurrency()
common = sys.modules["common"]  # the sibling module the script imported


def _stream(start: float, first: float, last: float, tokens: int):
    stats = bench.StreamStats(t_start=start, t_first=first, t_last=last)
    stats.reported_tokens = tokens
    return stats


def _summary(
    agg: dict[int, float], ttft: float = 0.5, tokens_ok: bool = True, foreign: float = 0.02
) -> dict:
    return {
        n: {
            "agg_tps": rate,
            "ttft_s": ttft,
            "stream_tps": rate / n,
            "rounds": 3,
            "wrong_token_rounds": [] if tokens_ok else ["r1"],
            "max_foreign_cpu_share": foreign,
        }
        for n, rate in agg.items()
    }


# ---------------------------------------------------------------------------- round metrics


def test_round_metrics_aggregate_spans_first_to_last_token():
    streams = [_stream(0.0, 1.0, 3.0, 11), _stream(0.0, 2.0, 4.0, 21)]
    m = bench.round_metrics(streams)
    # (10 + 20) tokens after the first ones, from t=1 (first token of any) to t=4 (last of any)
    assert m["agg_tps"] == pytest.approx(30 / 3)
    assert m["window_s"] == pytest.approx(3.0)
    assert m["ttft_median_s"] == pytest.approx(1.5)
    assert m["stream_tps_median"] == pytest.approx((5.0 + 10.0) / 2)
    assert [s["first_s"] for s in m["streams"]] == [0.0, 1.0]
    assert [s["tokens"] for s in m["streams"]] == [11, 21]


def test_round_metrics_single_stream_equals_its_decode_rate():
    m = bench.round_metrics([_stream(0.0, 0.25, 2.25, 65)])
    assert m["agg_tps"] == pytest.approx(32.0)
    assert m["stream_tps_median"] == pytest.approx(32.0)
    assert m["ttft_median_s"] == pytest.approx(0.25)


def test_round_metrics_empty_window_has_no_rate():
    m = bench.round_metrics([_stream(0.0, 1.0, 1.0, 1)])
    assert m["agg_tps"] is None
    assert m["stream_tps_median"] is None


def test_round_metrics_rejects_a_silent_stream():
    with pytest.raises(RuntimeError):
        bench.round_metrics([bench.StreamStats(t_start=0.0)])


# ---------------------------------------------------------------------------- rounds


def test_summarize_rounds_takes_medians_of_counted_rounds_only():
    def rnd(label, agg, ttft, tokens=(4, 4), foreign=0.01):
        streams = [{"tokens": t} for t in tokens]
        return {
            "run": label,
            "agg_tps": agg,
            "ttft_median_s": ttft,
            "stream_tps_median": agg / 2,
            "streams": streams,
            "foreign_cpu_share": foreign,
        }

    rounds = [
        rnd("warmup-0", 1.0, 9.0, tokens=(4, 3), foreign=0.9),
        rnd("r0", 10.0, 0.3, foreign=0.2),
        rnd("r1", 30.0, 0.1, foreign=None),
        rnd("r2", 20.0, 0.2, tokens=(4, 5)),
    ]
    s = bench.summarize_rounds(rounds, tokens=4)
    assert s["agg_tps"] == 20.0
    assert s["ttft_s"] == pytest.approx(0.2)
    assert s["stream_tps"] == 10.0
    assert s["rounds"] == 3
    assert s["wrong_token_rounds"] == ["warmup-0", "r2"]
    assert s["max_foreign_cpu_share"] == 0.2  # warm-up excluded, unknown skipped


def test_run_concurrently_returns_in_order_and_reraises():
    assert bench.run_concurrently(lambda body: body["n"] * 2, [{"n": 1}, {"n": 2}]) == [2, 4]

    def send(body):
        if body["n"] == 2:
            raise ValueError("boom")
        return body["n"]

    with pytest.raises(ValueError, match="boom"):
        bench.run_concurrently(send, [{"n": 1}, {"n": 2}])


def test_prompts_differ_from_their_first_character_on():
    (sys_a, user_a), (sys_b, user_b) = bench.prompt_for("a"), bench.prompt_for("b")
    assert sys_a != sys_b and user_a[:3] != user_b[:3]
    assert user_a.endswith(bench.PASSAGE)


def _cpu(wall, machine, server, client):
    return common.CpuSample(wall, machine, server, client)


def test_foreign_cpu_share_subtracts_server_and_client():
    before, after = _cpu(10.0, 100.0, 5.0, 1.0), _cpu(12.0, 103.0, 6.5, 1.3)
    # 3.0 s busy - 1.5 s server - 0.3 s client = 1.2 s of 2 s x 2 CPUs
    assert common.foreign_cpu_share(before, after, 2) == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ((10.0, None, 5.0, 1.0), (12.0, 103.0, 6.0, 1.0)),  # no /proc/stat
        ((10.0, 100.0, None, 1.0), (12.0, 103.0, None, 1.0)),  # server not readable
        ((10.0, 100.0, 5.0, 1.0), (10.0, 103.0, 6.0, 1.0)),  # empty interval
    ],
)
def test_foreign_cpu_share_unknown(before, after):
    assert common.foreign_cpu_share(_cpu(*before), _cpu(*after), 2) is None


def test_foreign_cpu_share_never_negative():
    before, after = _cpu(0.0, 10.0, 0.0, 0.0), _cpu(1.0, 11.0, 1.2, 0.0)
    assert common.foreign_cpu_share(before, after, 2) == 0.0


def test_wait_for_quiet_counts_busy_samples(monkeypatch):
    # machine busy seconds per sample: +1.0 (50% of 2 CPUs over 1 s), +1.0, then +0.1
    machine = iter([0.0, 1.0, 1.0, 2.0, 2.0, 2.1])
    clock = iter(range(100))

    def sample(pids):
        return common.CpuSample(float(next(clock)), next(machine), 0.0, 0.0)

    monkeypatch.setattr(bench, "cpu_sample", sample)
    monkeypatch.setattr(bench.time, "sleep", lambda s: None)
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    assert bench.wait_for_quiet([1], limit=60) == 2


def test_wait_for_quiet_off():
    assert bench.wait_for_quiet([1], limit=0) == 0


# ---------------------------------------------------------------------------- report


def test_table_rows_ratio_and_scaling():
    summary = {
        bench.OURS: _summary({1: 50.0, 4: 60.0}),
        bench.LLAMA: _summary({1: 50.0, 4: 75.0}, ttft=0.25),
    }
    rows = bench.table_rows(summary, [1, 4])
    assert len(bench.TABLE_HEADERS) == len(rows[0])
    assert rows[0] == [1, 50.0, 50.0, 1.0, 500.0, 250.0, 1.0, 1.0, 50.0, 50.0]
    assert rows[1][:4] == [4, 60.0, 75.0, pytest.approx(0.8)]
    assert rows[1][6] == pytest.approx(1.2) and rows[1][7] == pytest.approx(1.5)


def test_table_rows_with_one_side_missing_leaves_blanks():
    rows = bench.table_rows({bench.LLAMA: _summary({1: 40.0, 2: 60.0})}, [1, 2])
    assert rows[1][1] is None and rows[1][3] is None and rows[1][6] is None
    assert rows[1][2] == 60.0 and rows[1][7] == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("ours", "llama", "verdict"),
    [
        ({1: 50.0, 4: 60.0}, {1: 50.0, 4: 62.0}, "met"),
        ({1: 50.0, 4: 60.0}, {1: 50.0, 4: 80.0}, "NOT met"),  # below 0.9x llama-server
        ({1: 50.0, 4: 45.0}, {1: 50.0, 4: 45.0}, "NOT met"),  # no gain over one stream
    ],
)
def test_acceptance_line(ours, llama, verdict):
    summary = {bench.OURS: _summary(ours), bench.LLAMA: _summary(llama)}
    assert bench.acceptance_line(summary).endswith(f": {verdict}.")


def test_acceptance_line_needs_both_sides():
    assert bench.acceptance_line({bench.LLAMA: _summary({1: 1.0, 4: 2.0})}) is None


def _record() -> dict:
    # as read back from JSON: stream counts are string keys
    return {
        "config": {
            "model": "m.gguf",
            "tokens": 64,
            "threads": 2,
            "ctx": 4096,
            "repeats": 3,
            "warmup": 1,
            "streams": [1, 4],
            "prompt_tokens": 315,
        },
        "summary": {
            bench.OURS: {str(n): s for n, s in _summary({1: 50.0, 4: 60.0}).items()},
            bench.LLAMA: {
                str(n): s for n, s in _summary({1: 50.0, 4: 62.0}, tokens_ok=False).items()
            },
        },
    }


def test_contention_line_names_busy_rounds():
    summary = {
        bench.OURS: _summary({1: 50.0, 4: 60.0}),
        bench.LLAMA: {**_summary({1: 50.0}), **_summary({4: 60.0}, foreign=0.35)},
    }
    line = bench.contention_line(summary)
    assert "llama-server x4 (35%)" in line and "ours" not in line
    assert bench.contention_line({bench.OURS: _summary({1: 50.0})}) is None


def test_render_markdown():
    text = bench.render_markdown(_record())
    assert "| streams | ours agg tok/s | llama-server agg tok/s | ratio |" in text
    assert "| 4 | 60.00 | 62.00 | 0.97 | 500.00 | 500.00 | 1.20 |" in text
    assert "prompts of 315 tokens" in text
    assert "At 4 streams: ours / llama-server = 0.97" in text
    assert "WARNING: llama-server at 4 streams: wrong token count in r1" in text


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "c.png"
    bench.plot(_record(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parse_args_lists():
    args = bench.parse_args(["--streams", "4,1,2", "--sides", "llama-server"])
    assert args.streams == [1, 2, 4]
    assert args.sides == [bench.LLAMA]
    with pytest.raises(SystemExit):
        bench.parse_args(["--sides", "vllm"])
