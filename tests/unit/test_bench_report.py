"""Benchmark reports: the record's summaries and ratios, the markdown table, the PNG plot, the
files on disk, and the decode bound's arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentport.bench.bandwidth import Bound
from agentport.bench.cpu import CpuSample, foreign_share
from agentport.bench.report import (
    bound_line,
    file_digest,
    load_record,
    plot,
    ratio_to_reference,
    render_markdown,
    round_ratios,
    summary,
    write_record,
)
from agentport.errors import InvalidRequestError

BOUND = Bound(10.0, 90_000_000, 20_000, 500)


def result(decode: list[float], ttft: list[float], **extra) -> dict:
    samples = {"decode_tps": decode, "ttft_s": ttft, "itl_s": [0.01, 0.02, 0.05]}
    medians = {"decode_tps": decode, "ttft_s": ttft}  # one request per round
    return {"samples": samples, "round_medians": medians, "wrong_token_count": [], **extra}


def record(scenario: str = "compare", stamp: str = "2026-11-26T06:00:00+0000") -> dict:
    return {
        "schema": 1,
        "scenario": scenario,
        "timestamp": stamp,
        "config": {"threads": 2, "tokens": 128, "rounds": 3},
        "versions": {"agentport": "0.1.0"},
        "hardware": {"cpu": "Test CPU", "cores_logical": 2, "ram_bytes": 8 << 30, "gpu": None},
        "git": {"commit": "0123456789abcdef", "dirty": True},
        "model": {"file": "tiny.gguf", "quant": "Q4_1", "digest": "sha256:00"},
        "targets": [{"name": "agentport"}, {"name": "llama-server"}],
        "reference": "llama-server",
        "bound": BOUND.as_dict(),
        "results": {
            "agentport": result([95.0, 100.0, 105.0], [0.2, 0.2, 0.3]),
            "llama-server": result([100.0, 100.0, 100.0], [0.2, 0.25, 0.3]),
        },
    }


def test_bound_arithmetic():
    assert BOUND.bytes_per_token == 90_000_000 + 20_000 * 500
    assert BOUND.tokens_per_second == pytest.approx(10e9 / 100_000_000)
    assert BOUND.fraction(50.0) == pytest.approx(0.5)
    assert BOUND.fraction(None) is None


def test_summary_and_ratios():
    rec = record()
    stats = summary(rec)
    assert stats["agentport"]["decode_tps"]["median"] == 100.0
    assert stats["llama-server"]["ttft_s"]["p99"] == pytest.approx(0.299)
    assert ratio_to_reference(rec, "agentport", "decode_tps") == pytest.approx(1.0)
    assert round_ratios(rec, "agentport", "decode_tps") == pytest.approx([0.95, 1.0, 1.05])


def test_ratio_needs_a_reference():
    rec = record()
    rec["reference"] = None
    assert ratio_to_reference(rec, "agentport", "decode_tps") is None
    assert round_ratios(rec, "agentport", "decode_tps") == []


def test_markdown_table():
    text = render_markdown([record()])
    lines = text.splitlines()
    assert lines[0].startswith("| target | decode tok/s median |")
    assert "x llama-server" in lines[0] and "of bound" in lines[0]
    agentport_row = next(line for line in lines if line.startswith("| agentport |"))
    assert "| 100.0 |" in agentport_row and "| 1.000 | 1.000 |" in agentport_row
    assert "commit 0123456789 (modified)" in text
    assert bound_line(record()) in text
    assert "= 100.0 tokens/s" in bound_line(record())


def test_markdown_warns_about_short_runs_and_skips():
    rec = record()
    rec["results"]["agentport"]["wrong_token_count"] = ["r1 request 0 (90 tokens)"]
    rec["results"]["mlx"] = {"samples": {}, "round_medians": {}, "skipped": "no mlx here"}
    text = render_markdown([rec])
    assert "WARNING: agentport did not produce the requested tokens in r1 request 0" in text
    assert "mlx: skipped, no mlx here" in text


def test_several_records_get_a_run_column():
    text = render_markdown([record(), record(stamp="2026-11-27T06:00:00+0000")])
    assert text.splitlines()[0].startswith("| run | target |")
    assert "compare 2026-11-27T06:00" in text


def test_engine_records_show_pp_and_tg():
    rec = record("engine")
    rec["reference"] = "llamacpp"
    rec["results"] = {
        "llamacpp": {"samples": {"pp_tps": [900.0], "tg_tps": [80.0], "ttft_s": [0.01]}}
    }
    header = render_markdown([rec]).splitlines()[0]
    assert "pp tok/s median" in header and "tg tok/s median" in header


def test_mixed_scenarios_get_a_table_each(tmp_path: Path):
    engine = record("engine")
    engine["results"] = {"llamacpp": {"samples": {"tg_tps": [80.0], "ttft_s": [0.01]}}}
    text = render_markdown([record(), engine])
    headers = [line for line in text.splitlines() if line.startswith("| run |")]
    assert len(headers) == 2 and "tg tok/s median" in headers[1]
    plot([record(), engine], tmp_path / "mixed.png")


def test_plot_writes_a_png(tmp_path: Path):
    path = tmp_path / "plot.png"
    plot([record(), record(stamp="2026-11-27T06:00:00+0000")], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_and_load_a_record(tmp_path: Path):
    paths = write_record(record(), tmp_path / "out")
    assert {p.suffix for p in paths.values()} == {".json", ".md", ".png"}
    assert all(p.is_file() for p in paths.values())
    assert load_record(paths["json"])["results"]["agentport"]["samples"]["decode_tps"]


def test_load_refuses_other_json(tmp_path: Path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"benchmark": "decode"}))
    with pytest.raises(InvalidRequestError):
        load_record(other)
    with pytest.raises(InvalidRequestError):
        load_record(tmp_path / "missing.json")


def test_digest_of_a_blob_is_its_name(tmp_path: Path):
    blob = tmp_path / ("sha256-" + "ab" * 32)
    blob.write_bytes(b"not hashed")
    assert file_digest(blob) == "ab" * 32
    plain = tmp_path / "model.gguf"
    plain.write_bytes(b"")
    assert file_digest(plain) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_markdown_warns_about_a_busy_machine():
    rec = record()
    rec["results"]["agentport"]["foreign_cpu"] = [0.05, 0.3, None]
    rec["results"]["llama-server"]["foreign_cpu"] = [0.05]
    text = render_markdown([rec])
    assert "other processes took up to 30% of the CPU during agentport's" in text
    assert "during llama-server's" not in text


def test_foreign_cpu_share(monkeypatch: pytest.MonkeyPatch):
    import psutil

    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 2)
    before = CpuSample(1, wall=0.0, machine=0.0, server=0.0, client=0.0)
    after = CpuSample(1, wall=1.0, machine=1.5, server=1.0, client=0.1)
    assert foreign_share(before, after) == pytest.approx(0.2)
    unknown = CpuSample(None, wall=1.0, machine=1.5, server=None, client=0.1)
    assert foreign_share(before, unknown) is None
