"""The load scenarios over HTTP: serve (N requests at concurrency C against one target) and
compare (several targets, alternating A B A B, each as a ratio to a reference target); decode
and concurrency are compare runs with their own settings.

Every round runs after uncounted warm-ups, at temperature 0 with a fixed seed, asks for
generation that ignores end of sequence, and puts a tag naming the round and request at the very
front of each prompt so that no prefix cache can help. A run returns a record
(`report.new_record`) with per-target samples of the metrics in `metrics.py`, the per-round
medians, and the decode bound of `bandwidth.py` at the scenario's context.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from agentport.bench import cpu, metrics
from agentport.bench.bandwidth import copy_bandwidth, decode_bound
from agentport.bench.drivers import SEED, Prompt
from agentport.bench.metrics import Timeline, percentile
from agentport.bench.prompts import chat_prompt, stderr_log
from agentport.bench.report import model_facts, new_record
from agentport.bench.scenarios.conversation import tool
from agentport.bench.targets import REPO_ROOT, ServerOptions, Target, TargetSpec, started

Log = Callable[[str], None]

# ---------------------------------------------------------------------------- HTTP scenarios


@dataclass
class LoadConfig:
    """Requests per round, how many at once, tokens each, prompt words, rounds, warm-ups, and
    how busy other processes may make the machine before a round is run again."""

    requests: int = 1
    concurrency: int = 1
    tokens: int = 128
    prompt_words: int = 100
    rounds: int = 5
    warmup: int = 1
    max_foreign: float | None = None  # discard rounds where others took more CPU than this
    tools: int = 0  # Claude Code-shaped tools offered with tool_choice auto (a lazy grammar)


def offered_tools(count: int) -> tuple[dict, ...]:
    """``count`` Claude Code-shaped tool definitions, the same in every round."""
    rng = random.Random(SEED)
    return tuple(tool(rng, index, 40) for index in range(count))


def run_batch(target: Target, prompts: Sequence[Prompt], concurrency: int) -> list[Timeline]:
    """Send ``prompts`` to ``target``, at most ``concurrency`` at a time, released together."""
    if concurrency <= 1:
        return [target.driver.run(p) for p in prompts]
    gate = threading.Barrier(min(concurrency, len(prompts)))

    def one(prompt: Prompt) -> Timeline:
        with contextlib.suppress(threading.BrokenBarrierError):
            gate.wait(timeout=60)
        return target.driver.run(prompt)

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, prompts))


def new_result() -> dict:
    return {
        "samples": {},
        "round_medians": {},
        "wrong_token_count": [],
        "prompt_tokens": [],
        "foreign_cpu": [],  # per counted round: other processes' share of the CPU
    }


def add_round(result: dict, label: str, timelines: Sequence[Timeline], tokens: int) -> None:
    """Fold one counted round's timelines into a target's result."""
    round_samples = metrics.samples(timelines)
    round_samples["throughput_tps"] = [t] if (t := metrics.throughput(timelines)) else []
    for name, values in round_samples.items():
        result["samples"].setdefault(name, []).extend(values)
        median = percentile(values, 50) if values else None
        result["round_medians"].setdefault(name, []).append(median)
    for i, tl in enumerate(timelines):
        if tl.tokens != tokens:
            result["wrong_token_count"].append(f"{label} request {i} ({tl.tokens} tokens)")
        if tl.prompt_tokens:
            result["prompt_tokens"].append(tl.prompt_tokens)


@dataclass
class Measured:
    """One target's part of one round."""

    timelines: list[Timeline]
    foreign: float | None  # other processes' share of the CPU meanwhile
    server_seconds: float | None  # CPU time of the target's process meanwhile


def measure(target: Target, cfg: LoadConfig, label: str) -> Measured:
    """One round's requests against one target, with the CPU accounting around them."""
    tools = offered_tools(cfg.tools)
    prompts = [
        chat_prompt(f"{label} q{i}", cfg.prompt_words, cfg.tokens, tools)
        for i in range(cfg.requests)
    ]
    before = cpu.sample(target.process.pid if target.process else None)
    timelines = _run_or_explain(target, prompts, cfg.concurrency, label)
    after = cpu.sample(before.pid)
    return Measured(timelines, cpu.foreign_share(before, after), cpu.server_seconds(before, after))


def alternate(targets: Sequence[Target], cfg: LoadConfig, log: Log = stderr_log) -> dict:
    """Warm-up rounds, then ``cfg.rounds`` counted rounds of A B ...; every target of a round
    gets the same prompts, and every round new ones. With ``cfg.max_foreign`` a round in which
    other processes took more of the CPU than that, for any target, is discarded for all of
    them and run again (at most ``4 x rounds`` tries). Returns target name -> result."""
    results = {t.name: new_result() for t in targets}
    for i in range(cfg.warmup):
        for target in targets:
            _log_round(log, target.name, f"warmup-{i}", measure(target, cfg, f"warmup-{i}"))
    counted = tries = 0
    while counted < cfg.rounds and tries < 4 * cfg.rounds:
        label = f"r{tries}"
        tries += 1
        measured: dict[str, Measured] = {}
        for target in targets:
            measured[target.name] = measure(target, cfg, label)
            _log_round(log, target.name, label, measured[target.name])
            if _contended(measured, cfg.max_foreign):
                break  # the round is lost: do not spend the other targets' time on it
        if _contended(measured, cfg.max_foreign):
            log(f"{'':>14} {label:>9}: discarded, other processes were busy")
            continue
        counted += 1
        for name, m in measured.items():
            add_round(results[name], label, m.timelines, cfg.tokens)
            results[name]["foreign_cpu"].append(m.foreign)
            _add_cpu_per_token(results[name], m.server_seconds, m.timelines)
    for result in results.values():
        result["discarded_rounds"] = tries - counted
    return results


def _contended(measured: dict[str, Measured], limit: float | None) -> bool:
    if limit is None:
        return False
    return any(m.foreign is not None and m.foreign > limit for m in measured.values())


def _log_round(log: Log, name: str, label: str, m: Measured) -> None:
    other = "" if m.foreign is None else f", others {m.foreign:.0%} CPU"
    log(f"{name:>14} {label:>9}: {_describe(m.timelines)}{other}")


def _add_cpu_per_token(result: dict, seconds: float | None, timelines) -> None:
    """The server's CPU time over the round's output tokens: less sensitive to a busy machine."""
    tokens = sum(tl.tokens for tl in timelines)
    value = seconds / tokens if seconds is not None and tokens else None
    result["samples"].setdefault("cpu_per_token_s", []).extend([] if value is None else [value])
    result["round_medians"].setdefault("cpu_per_token_s", []).append(value)


def _run_or_explain(target: Target, prompts, concurrency: int, label: str) -> list[Timeline]:
    from agentport.errors import ApiError

    try:
        return run_batch(target, prompts, concurrency)
    except ApiError as exc:
        tail = target.log_tail()
        raise ApiError(f"{target.name}, round {label}: {exc.message}\n{tail}".rstrip()) from exc


def _describe(timelines: Sequence[Timeline]) -> str:
    rates = [r for tl in timelines if (r := metrics.decode_tps(tl)) is not None]
    firsts = [f for tl in timelines if (f := metrics.ttft(tl)) is not None]
    rate = f"{percentile(rates, 50):7.1f} tok/s" if rates else "    n/a"
    first = f"{percentile(firsts, 50) * 1000:6.0f} ms" if firsts else "n/a"
    return f"decode {rate}, TTFT {first}, {sum(tl.tokens for tl in timelines)} tokens"


# ---------------------------------------------------------------------------- the bound


def measure_bound(model_path: Path, threads: int, context: int, copy_mib: int) -> dict:
    """The decode bound at ``context`` tokens, from the best copy bandwidth at 1..threads."""
    counts = sorted({1, max(threads, 1)})
    bandwidth = max(copy_bandwidth(copy_mib, n) for n in counts)
    return decode_bound(bandwidth, model_path, context).as_dict()


def decode_context(results: dict, tokens: int) -> int:
    """Mean context while decoding: the median prompt, plus half the generated tokens."""
    prompts = [n for r in results.values() for n in r.get("prompt_tokens", [])]
    return int((percentile(prompts, 50) if prompts else 0) + tokens / 2)


# ---------------------------------------------------------------------------- runs


@dataclass
class HttpRun:
    """What a serve or compare run needs besides its load."""

    specs: list[TargetSpec]
    server: ServerOptions
    reference: str | None = None
    copy_mib: int = 256


def run_http(scenario: str, run: HttpRun, cfg: LoadConfig, log: Log = stderr_log) -> dict:
    """Start the targets, drive them (alternating), stop them; the run's record."""
    config = {**asdict(cfg), "threads": run.server.threads, "ctx": run.server.ctx}
    config["targets"] = [s.name for s in run.specs]
    record = new_record(scenario, config, REPO_ROOT)
    record["model"] = model_facts(run.server.model_path)
    run.server.n_ctx_train = record["model"]["n_ctx_train"]
    with tempfile.TemporaryDirectory(prefix="agentport-bench-") as tmp:
        run.server.workdir = Path(tmp)
        with started(run.specs, run.server) as targets:
            record["targets"] = [_target_facts(t) for t in targets]
            record["results"] = alternate(targets, cfg, log)
    record["reference"] = run.reference
    context = decode_context(record["results"], cfg.tokens)
    record["bound"] = measure_bound(
        run.server.model_path, run.server.threads, context, run.copy_mib
    )
    return record


def _target_facts(target: Target) -> dict:
    spec = target.spec
    return {
        "name": spec.name,
        "kind": spec.kind,
        "dialect": spec.dialect,
        "url": target.url,
        "version": target.version,
    }
