"""Engines for the engine scenario, loaded by name: `llamacpp` and `mlx`.

`load_engine` returns the engine and a version string, or a sentence saying why it cannot run
here (MLX not installed, or its adapter `agentport.engines.mlx` not importable): the scenario
records that engine as skipped instead of failing.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

from agentport.errors import ModelLoadError

ENGINES = ("llamacpp", "mlx")


def load_engine(name: str, path: Path, threads: int, ctx: int) -> tuple[Any, str] | str:
    """(engine, version) for ``name`` on the GGUF at ``path``, or why it is unavailable."""
    if name == "llamacpp":
        return _llamacpp(path, threads, ctx)
    if name == "mlx":
        return _mlx(path, ctx)  # MLX picks its own CPU threads
    return f"unknown engine {name!r} (known: {', '.join(ENGINES)})"


def _version(dist: str) -> str:
    try:
        return f"{dist} {metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return dist


def _llamacpp(path: Path, threads: int, ctx: int) -> tuple[Any, str]:
    from agentport.engines.llamacpp import EngineOptions, LlamaCppEngine

    options = EngineOptions(n_ctx=ctx, parallel=1, kv_type="f16", threads=threads)
    return LlamaCppEngine(path, options), _version("llama-cpp-python")


def _mlx(path: Path, ctx: int) -> tuple[Any, str] | str:
    try:
        from agentport.engines.mlx import MlxEngine, MlxOptions
    except ImportError as exc:
        return f"the MLX engine does not import here ({exc}); install agentport[mlx]"
    try:
        return MlxEngine(path, MlxOptions(n_ctx=ctx)), _version("mlx")
    except ModelLoadError as exc:
        return f"the MLX engine cannot load {path.name}: {exc.message}"
