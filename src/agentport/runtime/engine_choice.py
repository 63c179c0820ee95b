"""Which engine runs the models: the factory for `settings.engine`.

llama.cpp is the default; MLX (`AGENTPORT_ENGINE=mlx`, `agentport serve --engine mlx`) is opt-in.
Each factory imports its engine library only when a model is loaded.
"""

from __future__ import annotations

from pathlib import Path

from agentport.config import Settings
from agentport.engines.base import Engine
from agentport.planner.guard import LoadPlan
from agentport.runtime.loader import EngineFactory


def llamacpp_factory(path: Path, settings: Settings, plan: LoadPlan) -> Engine:
    """A llama.cpp engine for `path`, serving the plan's sequences and context."""
    from agentport.engines.llamacpp import EngineOptions, LlamaCppEngine

    options = EngineOptions(
        n_ctx=plan.n_ctx,
        parallel=plan.parallel,
        kv_type=plan.kv_type,
        yarn_factor=plan.yarn_factor,
        threads=settings.threads,
        batch_size=settings.batch_size,
        flash_attention=settings.flash_attention,
        metadata_cache=settings.metadata_cache,
        prefix_cache_dir=settings.prefix_cache_dir,
        prefix_cache_bytes=settings.prefix_cache_disk,
        prefix_cache_min_tokens=settings.prefix_cache_min_tokens,
    )
    return LlamaCppEngine(path, options)


def mlx_factory(path: Path, settings: Settings, plan: LoadPlan) -> Engine:
    """An MLX engine for `path`; the plan's context is its limit (one sequence)."""
    from agentport.engines.mlx import MlxEngine, MlxOptions

    options = MlxOptions(
        n_ctx=plan.n_ctx,
        yarn_factor=plan.yarn_factor,
        prefill_step=settings.batch_size,
        metadata_cache=settings.metadata_cache,
    )
    return MlxEngine(path, options)


FACTORIES: dict[str, EngineFactory] = {"llamacpp": llamacpp_factory, "mlx": mlx_factory}


def engine_factory(settings: Settings) -> EngineFactory:
    return FACTORIES[settings.engine]
