"""The regression gate's decisions on recorded runs: a slowdown inside the run-to-run spread
passes, one beyond threshold + spread fails, for rates, latencies and ratios to the reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from agentport.bench.gate import gate, parse_threshold, regression, render
from agentport.bench.report import load_record
from agentport.cli.bench import REGRESSION_EXIT, _gate
from agentport.errors import InvalidRequestError


def recorded(
    tmp_path: Path, name: str, ours: list[float], ref: list[float], ttft: float = 0.2
) -> Path:
    """A compare record on disk: per round, our decode rate and the reference's."""

    def result(rates: list[float]) -> dict:
        samples = {"decode_tps": rates, "ttft_s": [ttft] * len(rates)}
        return {"samples": samples, "round_medians": dict(samples), "wrong_token_count": []}

    rec = {
        "schema": 1,
        "scenario": "compare",
        "timestamp": "2026-11-26T06:00:00+0000",
        "config": {"threads": 2},
        "hardware": {"cpu": "Test CPU"},
        "git": {"commit": None, "dirty": None},
        "targets": [],
        "reference": "llama-server",
        "bound": None,
        "results": {"agentport": result(ours), "llama-server": result(ref)},
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(rec))
    return path


def decide(tmp_path: Path, base: Path, cur: Path, threshold: str = "5%"):
    return gate(load_record(cur), load_record(base), parse_threshold(threshold))


def failed_items(result) -> set[tuple[str, str]]:
    return {(i.target, i.metric) for i in result.items if i.failed}


def test_same_numbers_pass(tmp_path: Path):
    base = recorded(tmp_path, "base", [100, 100, 100], [100, 100, 100])
    result = decide(tmp_path, base, base)
    assert not result.failed
    assert "passed" in render(result)


def test_small_slowdown_passes(tmp_path: Path):
    base = recorded(tmp_path, "base", [100, 100, 100], [100, 100, 100])
    cur = recorded(tmp_path, "cur", [97, 97, 97], [100, 100, 100])
    assert not decide(tmp_path, base, cur).failed


def test_slowdown_past_the_threshold_fails(tmp_path: Path):
    base = recorded(tmp_path, "base", [100, 100, 100], [100, 100, 100])
    cur = recorded(tmp_path, "cur", [90, 90, 90], [100, 100, 100])
    result = decide(tmp_path, base, cur)
    assert result.failed
    assert failed_items(result) == {
        ("agentport", "decode_tps"),
        ("agentport", "decode_tps / llama-server"),
    }
    assert "FAILED" in render(result) and "agentport decode tok/s" in render(result)


def test_slowdown_inside_the_spread_passes(tmp_path: Path):
    base = recorded(tmp_path, "base", [80, 100, 120], [100, 100, 100])  # +-20 % noise
    cur = recorded(tmp_path, "cur", [75, 90, 105], [100, 100, 100])
    assert not decide(tmp_path, base, cur).failed


def test_a_slower_machine_fails_absolute_rates_but_not_the_ratio(tmp_path: Path):
    base = recorded(tmp_path, "base", [100, 100, 100], [100, 100, 100])
    cur = recorded(tmp_path, "cur", [80, 80, 80], [80, 80, 80])
    result = decide(tmp_path, base, cur)
    assert ("agentport", "decode_tps / llama-server") not in failed_items(result)
    assert ("agentport", "decode_tps") in failed_items(result)


def test_latency_regression_fails(tmp_path: Path):
    base = recorded(tmp_path, "base", [100, 100, 100], [100, 100, 100], ttft=0.2)
    cur = recorded(tmp_path, "cur", [100, 100, 100], [100, 100, 100], ttft=0.3)
    assert ("agentport", "ttft_s") in failed_items(decide(tmp_path, base, cur))


def test_faster_is_never_a_regression(tmp_path: Path):
    base = recorded(tmp_path, "base", [100, 100, 100], [100, 100, 100], ttft=0.3)
    cur = recorded(tmp_path, "cur", [150, 150, 150], [100, 100, 100], ttft=0.1)
    assert not decide(tmp_path, base, cur, "0%").failed


def test_nothing_in_common_is_an_error(tmp_path: Path):
    base = load_record(recorded(tmp_path, "base", [100], [100]))
    cur = load_record(recorded(tmp_path, "cur", [100], [100]))
    cur["results"] = {"other": cur["results"]["agentport"]}
    with pytest.raises(InvalidRequestError):
        gate(cur, base, 0.05)


def test_regression_direction():
    assert regression(100.0, 90.0, higher_is_better=True) == pytest.approx(0.1)
    assert regression(0.2, 0.3, higher_is_better=False) == pytest.approx(0.5)


@pytest.mark.parametrize(("text", "value"), [("5%", 0.05), ("0.05", 0.05), (" 12.5% ", 0.125)])
def test_thresholds(text: str, value: float):
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["five", "150%", "-1%"])
def test_bad_thresholds(text: str):
    with pytest.raises(InvalidRequestError):
        parse_threshold(text)


def test_the_command_exits_non_zero_on_a_regression(tmp_path: Path):
    base = recorded(tmp_path, "base", [100, 100, 100], [100, 100, 100])
    cur = load_record(recorded(tmp_path, "cur", [90, 90, 90], [100, 100, 100]))
    with pytest.raises(typer.Exit) as exited:
        _gate(cur, base, "5%")
    assert exited.value.exit_code == REGRESSION_EXIT
    _gate(load_record(base), base, "5%")  # no regression: returns
