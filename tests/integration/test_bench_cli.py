"""`agentport bench serve` end to end against the shared real server: a tiny run per dialect
writes a record, a table and a plot, and every request yields exactly the tokens asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentport.cli.main import app

TOKENS = 8


@pytest.mark.parametrize("dialect", ["anthropic", "openai", "ollama"])
def test_bench_serve_writes_a_record(server, tmp_path: Path, dialect: str):
    out = tmp_path / "results"
    args = ["bench", "serve", "--target", f"ours={server.url},{dialect}"]
    args += ["--requests", "2", "--concurrency", "2", "--tokens", str(TOKENS), "--warmup", "0"]
    args += ["--prompt-words", "20", "--copy-mib", "8", "--threads", "2", "--out", str(out)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output

    record = json.loads(next(out.glob("serve-*.json")).read_text())
    assert record["scenario"] == "serve"
    assert record["model"]["digest"].startswith("sha256:")
    assert record["hardware"]["cores_logical"] >= 1
    assert record["bound"]["tokens_per_second"] > 0
    result = record["results"]["ours"]
    assert len(result["samples"]["ttft_s"]) == 2
    assert len(result["samples"]["decode_tps"]) == 2
    if dialect != "ollama":  # Ollama's API has no ignore_eos: its runs may stop early
        assert result["wrong_token_count"] == []
    assert next(out.glob("serve-*.png")).stat().st_size > 0
    assert "| ours |" in next(out.glob("serve-*.md")).read_text()
    assert "| ours |" in done.output


def test_bench_refuses_a_remote_target(tmp_path: Path):
    args = ["bench", "serve", "--target", "x=http://example.com:80,openai", "--out", str(tmp_path)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 1
    assert "127.0.0.1" in done.output
