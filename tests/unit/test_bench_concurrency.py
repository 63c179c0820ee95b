"""Tests of the concurrency scenario: one compare run per stream count with that many slots,
and the scaling table and acceptance line built from their records."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentport.bench.scenarios import concurrency
from agentport.bench.scenarios.concurrency import (
    ConcurrencyConfig,
    acceptance_line,
    render_scaling,
    scaling_rows,
)
from agentport.bench.scenarios.load import HttpRun
from agentport.bench.targets import ServerOptions, TargetSpec


def _record(n: int, ours: float, llama: float, ttft: float = 0.2) -> dict:
    def result(rate: float) -> dict:
        return {"samples": {"throughput_tps": [rate], "ttft_s": [ttft]}}

    return {
        "config": {"concurrency": n},
        "reference": "llama-server",
        "results": {"agentport": result(ours), "llama-server": result(llama)},
    }


RECORDS = [_record(4, 180.0, 190.0), _record(1, 60.0, 62.0), _record(2, 110.0, 100.0)]


def test_run_concurrency_gives_every_stream_count_its_own_slots(monkeypatch, tmp_path: Path):
    seen = []

    def fake_run_http(scenario, run, cfg, log):
        seen.append((scenario, run.server.parallel, cfg.requests, cfg.concurrency, cfg.tokens))
        return {"config": {"concurrency": cfg.concurrency}}

    monkeypatch.setattr(concurrency, "run_http", fake_run_http)
    run = HttpRun([TargetSpec("agentport", "agentport", "openai")], ServerOptions(tmp_path))
    records = concurrency.run_concurrency(run, ConcurrencyConfig([1, 4], tokens=8), log=print)
    assert seen == [("concurrency", 1, 1, 1, 8), ("concurrency", 4, 4, 4, 8)]
    assert len(records) == 2 and run.server.parallel == 1  # the caller's options are untouched


def test_scaling_rows_ratio_scaling_and_ttft():
    headers, rows = scaling_rows(RECORDS)
    assert headers[:3] == ["streams", "target", "throughput tok/s"]
    assert [r[:2] for r in rows][:2] == [[1, "agentport"], [1, "llama-server"]]
    four = next(r for r in rows if r[:2] == [4, "agentport"])
    assert four[2] == 180.0
    assert four[3] == pytest.approx(180 / 190)
    assert four[4] == pytest.approx(3.0)
    assert four[5] == pytest.approx(200.0)


def test_scaling_without_a_one_stream_record_leaves_blanks():
    _, rows = scaling_rows([_record(2, 10.0, 20.0)])
    assert rows[0][4] is None and rows[0][3] == 0.5


@pytest.mark.parametrize(
    ("ours4", "verdict"), [(180.0, "met"), (160.0, "NOT met"), (50.0, "NOT met")]
)
def test_acceptance_line(ours4: float, verdict: str):
    line = acceptance_line([_record(1, 60.0, 62.0), _record(4, ours4, 190.0)])
    assert line is not None and line.endswith(f": {verdict}.")


def test_acceptance_line_needs_one_and_four_streams():
    assert acceptance_line([_record(2, 1.0, 1.0)]) is None


def test_render_scaling():
    text = render_scaling(RECORDS)
    assert "| streams | target | throughput tok/s |" in text
    assert "At 4 streams" in text
