"""`agentport fit`: the table, the verdict and exit code, --ram, --json, --tiers, and the
errors, with no server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter
from typer.testing import CliRunner

from agentport.cli import fit as fit_module
from agentport.cli.main import app
from agentport.planner.tiers import agent_models

runner = CliRunner()
GIB = 1 << 30


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("Tiny")
    writer.add_block_count(2)
    writer.add_context_length(4096)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_file_type(1)
    writer.add_tensor("token_embd.weight", np.ones((1000, 64), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def qwen14b(monkeypatch: pytest.MonkeyPatch):
    """Make every model look like Qwen2.5-Coder 14B at Q4_K_M."""
    shape = next(m.shape for m in agent_models() if m.tag == "qwen2.5-coder:14b")
    monkeypatch.setattr(fit_module, "read_shape", lambda path, cache=None: shape)
    return shape


def test_fits_on_a_16gb_machine(tiny_gguf: Path):
    result = runner.invoke(app, ["fit", str(tiny_gguf), "--ram", "16GB"])
    assert result.exit_code == 0, result.output
    for item in ("weights", "KV cache", "compute", "reserve", "total", "budget", "verdict"):
        assert item in result.output
    assert "on a 16.0 GiB machine" in result.output
    assert "6.0 GiB (IDE, browser, OS)" in result.output
    assert "yarn x8 from 4096" in result.output
    assert "fits" in result.output


def words(text: str) -> str:
    """The output with table wrapping undone."""
    return " ".join(text.split())


def test_fits_after_adapting(tiny_gguf: Path, qwen14b):
    result = runner.invoke(app, ["fit", str(tiny_gguf), "--ram", "16GB"])
    assert result.exit_code == 0, result.output
    assert "fits after adapting" in words(result.output)
    assert "q8_0 KV cache: an f16 one does not fit" in words(result.output)
    assert "below the agent floor of 32768" in words(result.output)


def test_does_not_fit_exits_1(tiny_gguf: Path, qwen14b):
    result = runner.invoke(app, ["fit", str(tiny_gguf), "--ram", "8GB"])
    assert result.exit_code == 1
    assert "does not fit" in words(result.output)
    assert "would fit" in words(result.output)


def test_json(tiny_gguf: Path, qwen14b):
    args = ["fit", str(tiny_gguf), "--ram", "24GB", "--parallel", "2", "--ctx", "16384", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["fits"] is True
    assert (data["n_ctx"], data["parallel"], data["kv_type"]) == (16384, 2, "f16")
    assert data["total"] == data["weights"] + data["kv_cache"] + data["compute"]
    assert data["reserve"] == 7 * GIB and data["budget"] == 17 * GIB
    assert data["machine"]["described"] is True


def test_kv_type_option(tiny_gguf: Path):
    result = runner.invoke(app, ["fit", str(tiny_gguf), "--kv-type", "q4_0", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["kv_type"] == "q4_0"


def test_this_machine(tiny_gguf: Path):
    result = runner.invoke(app, ["fit", str(tiny_gguf), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["machine"]["described"] is False and data["machine"]["total"] > 0


def test_tiers():
    result = runner.invoke(app, ["fit", "--tiers"])
    assert result.exit_code == 0, result.output
    for text in ("qwen2.5-coder:7b", "qwen2.5-coder:14b", "llama3.1:8b", "16 GB", "48 GB"):
        assert text in result.output
    data = json.loads(runner.invoke(app, ["fit", "--tiers", "--json"]).output)
    by_tag = {row["tag"]: row for row in data["tiers"]}
    assert by_tag["qwen2.5-coder:7b"]["machines"]["16"]["fits"] is True
    assert by_tag["qwen2.5-coder:14b"]["machines"]["16"]["fits"] is False


def test_embedded_model_from_the_store():
    result = runner.invoke(app, ["fit", "smollm2:135m", "--ram", "16GB", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["fits"] is True and data["weights"] == 96_576_768


@pytest.mark.parametrize(
    "args,message",
    [
        (["fit"], "name a model"),
        (["fit", "no-such-model"], "not found"),
        (["fit", "missing.gguf"], "no such file"),
        (["fit", "--ram", "lots", "x.gguf"], "no such file"),
    ],
)
def test_errors(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert message in result.output


def test_bad_ram_and_kv_type(tiny_gguf: Path):
    result = runner.invoke(app, ["fit", str(tiny_gguf), "--ram", "lots"])
    assert result.exit_code == 1 and "not a size" in result.output
    result = runner.invoke(app, ["fit", str(tiny_gguf), "--kv-type", "q5_1"])
    assert result.exit_code == 1 and "unknown KV cache type" in result.output
