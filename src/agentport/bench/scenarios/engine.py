"""The engine scenario: engines called directly through their protocol, like llama-bench: pp =
a prompt's tokens over the time to `Prefilled`, tg = tokens generated after a short prompt,
ignoring end of sequence. The first engine is the reference; one that cannot load here is
recorded as skipped with the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from agentport.bench import metrics
from agentport.bench.drivers import SEED, EngineDriver
from agentport.bench.metrics import Timeline
from agentport.bench.prompts import stderr_log, tagged
from agentport.bench.report import model_facts, new_record
from agentport.bench.scenarios.load import Log, measure_bound, new_result
from agentport.bench.targets import REPO_ROOT


@dataclass
class EngineConfig:
    pp: int = 512  # prompt tokens of a prompt-processing run
    tg: int = 128  # tokens generated in a generation run
    reps: int = 3
    warmup: int = 1


def pp_tokens(engine, tag: str, n: int) -> list[int]:
    """Exactly ``n`` prompt tokens of tagged prose (the tag comes first, so no cache helps)."""
    words = n
    while True:
        tokens = engine.tokenize(tagged(tag, words))
        if len(tokens) >= n:
            return tokens[:n]
        words *= 2


def engine_round(driver: EngineDriver, cfg: EngineConfig, label: str) -> tuple[Timeline, Timeline]:
    """One pp run (``cfg.pp`` tokens, one generated) and one tg run (``cfg.tg`` tokens)."""
    from agentport.core import SamplingParams

    pp_params = SamplingParams(temperature=0, seed=SEED, max_tokens=1)
    pp = driver.run(pp_tokens(driver.engine, f"pp {label}", cfg.pp), pp_params)
    tg_params = SamplingParams(temperature=0, seed=SEED, max_tokens=cfg.tg, ignore_eos=True)
    tg = driver.run(driver.engine.tokenize(f"[tg {label}] Once upon a time"), tg_params)
    return pp, tg


def bench_engine(engine, cfg: EngineConfig, name: str, log: Log = stderr_log) -> dict:
    """Warm-ups, then ``cfg.reps`` pp and tg runs on one engine; its result."""
    driver, result = EngineDriver(engine), new_result()
    labels = [f"warmup-{i}" for i in range(cfg.warmup)] + [f"r{i}" for i in range(cfg.reps)]
    for label in labels:
        pp, tg = engine_round(driver, cfg, label)
        values = {
            "pp_tps": metrics.prefill_tps(pp),
            "tg_tps": metrics.decode_tps(tg),
            "ttft_s": metrics.ttft(tg),
        }
        log(f"{name:>10} {label:>9}: " + ", ".join(f"{k} {_num(v)}" for k, v in values.items()))
        if label.startswith("warmup"):
            continue
        for metric, value in values.items():
            result["samples"].setdefault(metric, []).extend([] if value is None else [value])
            result["round_medians"].setdefault(metric, []).append(value)
        if tg.tokens != cfg.tg:
            result["wrong_token_count"].append(f"{label} ({tg.tokens} tokens)")
        result["prompt_tokens"].append(tg.prompt_tokens or 0)
    return result


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}" if value < 10 else f"{value:.1f}"


@dataclass
class EngineRun:
    engines: list[str]
    model_path: Path
    threads: int
    ctx: int = 4096
    copy_mib: int = 256


def run_engines(run: EngineRun, cfg: EngineConfig, log: Log = stderr_log) -> dict:
    """The engine scenario over ``run.engines``; an engine that cannot load is recorded as
    skipped with its reason. The first engine is the reference."""
    from agentport.bench.engines import load_engine

    config = {**asdict(cfg), "threads": run.threads, "ctx": run.ctx, "targets": run.engines}
    record = new_record("engine", config, REPO_ROOT)
    record["model"] = model_facts(run.model_path)
    record["reference"] = run.engines[0]
    for name in run.engines:
        loaded = load_engine(name, run.model_path, run.threads, run.ctx)
        if isinstance(loaded, str):
            log(f"{name}: skipped, {loaded}")
            record["results"][name] = {**new_result(), "skipped": loaded}
            continue
        engine, version = loaded
        record["targets"].append({"name": name, "kind": "engine", "version": version})
        try:
            record["results"][name] = bench_engine(engine, cfg, name, log)
        finally:
            engine.close()
    context = int(cfg.tg / 2) + 8
    record["bound"] = measure_bound(run.model_path, run.threads, context, run.copy_mib)
    return record
