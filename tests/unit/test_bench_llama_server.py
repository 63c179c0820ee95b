"""Where the llama-server build lives: the user's cache, per llama-cpp-python version and cmake
options, never the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentport.bench import llama_server


def test_the_build_lives_in_the_users_cache(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(Path, "home", lambda: tmp_path)
    monkeypatch.setattr(llama_server, "pinned_version", lambda: "0.3.36")
    path = llama_server.binary_path()
    assert path.parts[-2:] == ("bin", "llama-server")
    folder = path.parent.parent
    assert folder.parent == tmp_path / ".cache" / "agentport" / "llama-server"
    assert folder.name.startswith("0.3.36-") and len(folder.name) == len("0.3.36-") + 12


def test_other_options_build_elsewhere():
    one = llama_server.build_dir("1.0", ["-DA=1"])
    assert one == llama_server.build_dir("1.0", ["-DA=1"])
    assert one != llama_server.build_dir("1.0", ["-DA=2"])
    assert one != llama_server.build_dir("1.1", ["-DA=1"])


@pytest.mark.parametrize(("machine", "no_amx"), [("x86_64", True), ("arm64", False)])
def test_amx_is_off_on_x86(monkeypatch, machine: str, no_amx: bool):
    monkeypatch.setattr(llama_server.platform, "machine", lambda: machine)
    options = llama_server.cmake_options()
    assert options[: len(llama_server.CMAKE_OPTIONS)] == list(llama_server.CMAKE_OPTIONS)
    assert any("-mno-amx-tile" in o for o in options) is no_amx


def test_the_version_is_the_installed_llama_cpp_python():
    from importlib import metadata

    assert llama_server.pinned_version() == metadata.version("llama-cpp-python")
