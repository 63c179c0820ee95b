"""`agentport bench`: the benchmark harness on the command line.

`engine` measures engines called directly (pp + tg, like llama-bench), `serve` sends N requests
at concurrency C to one target, `compare` alternates several targets and reports each as a
ratio to a reference (and, with `--baseline`, gates regressions), `report` renders earlier
records together, and `run` runs the standard set. The work lives in `agentport.bench`; every
run writes a JSON record, a markdown table and a PNG plot under `--out`. `agent-loop` and
`tool-calls` run the checkout's `bench/agent_loop.py` and `bench/tool_calls.py` with the
arguments given (the prefix-cache and tool-call scenarios).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from agentport.cli.console import err_console, fail, reporting

bench_app = typer.Typer(
    help="Benchmarks: engines, servers side by side, reports and the regression gate.",
    no_args_is_help=True,
)

REGRESSION_EXIT = 3
DEFAULT_OUT = Path("bench/results")

ModelOpt = Annotated[
    Path | None, typer.Option("--model", help="GGUF file (default: the embedded model).")
]
ModelNameOpt = Annotated[
    str, typer.Option(help="Model name sent to servers (agentport serves the embedded one).")
]
ThreadsOpt = Annotated[
    int | None, typer.Option(help="Threads for every engine and server (default: cores).")
]
CtxOpt = Annotated[int, typer.Option(help="Context per sequence for every server and engine.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Directory for the JSON, markdown and PNG.")]
CopyOpt = Annotated[int, typer.Option(help="MiB copied per measurement of memory bandwidth.")]
LlamaBinOpt = Annotated[
    Path | None,
    typer.Option(help="llama-server binary (default: built by bench/llama_server.py)."),
]
ForeignOpt = Annotated[
    str | None,
    typer.Option(
        help="Run a round again when other processes took more of the CPU than this (10%)."
    ),
]
TargetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        help="agentport[:dialect], llama-server[:dialect] or NAME=URL,DIALECT "
        "(dialect: openai, anthropic, ollama). Repeat for several.",
    ),
]


@contextmanager
def _stoppable() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does, so the servers it started are stopped too."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _model_path(model: Path | None) -> Path:
    from agentport.store.embedded import packaged_gguf

    path = model or packaged_gguf()
    if path is None:
        fail("no model: pass --model FILE.gguf (the embedded model package is not installed)")
    if not path.is_file():
        fail(f"no such model file: {path}")
    return path


def _threads(threads: int | None) -> int:
    from agentport.engines.llamacpp import default_threads

    return threads or default_threads()


def _emit(record: dict, out: Path) -> None:
    from agentport.bench.report import render_markdown, write_record

    paths = write_record(record, out)
    typer.echo(render_markdown([record]))
    err_console.print(f"record: {paths['json']} (.md, .png)", markup=False, soft_wrap=True)


def _gate(record: dict, baseline: Path | None, max_regression: str) -> None:
    if baseline is None:
        return
    from agentport.bench.gate import gate, parse_threshold, render
    from agentport.bench.report import load_record

    result = gate(record, load_record(baseline), parse_threshold(max_regression))
    typer.echo(render(result))
    if result.failed:
        raise typer.Exit(code=REGRESSION_EXIT)


def _http_run(targets, model, model_name, threads, ctx, llama_bin, reference, copy_mib, parallel=1):
    from agentport.bench.scenarios import HttpRun
    from agentport.bench.targets import ServerOptions, parse_target

    specs = [parse_target(t) for t in targets]
    names = [s.name for s in specs]
    if reference is not None and reference not in names:
        fail(f"--reference {reference} is not one of the targets ({', '.join(names)})")
    server = ServerOptions(
        _model_path(model), model_name, _threads(threads), ctx, 0, parallel, llama_bin
    )
    return HttpRun(specs, server, reference, copy_mib)


def _share(text: str | None) -> float | None:
    from agentport.bench.gate import parse_threshold

    return None if text is None else parse_threshold(text)


def _default_reference(targets: list[str]) -> str:
    names = [t.partition("=")[0].partition(":")[0] for t in targets]
    return "llama-server" if "llama-server" in names else names[-1]


@bench_app.command("engine")
def engine_command(
    engine: Annotated[
        list[str] | None, typer.Option("--engine", help="llamacpp or mlx; repeat for both.")
    ] = None,
    pp: Annotated[int, typer.Option(help="Prompt tokens of a prompt-processing run.")] = 512,
    tg: Annotated[int, typer.Option(help="Tokens of a generation run.")] = 128,
    reps: Annotated[int, typer.Option(help="Counted runs of each.")] = 3,
    warmup: Annotated[int, typer.Option(help="Uncounted runs first.")] = 1,
    model: ModelOpt = None,
    threads: ThreadsOpt = None,
    ctx: CtxOpt = 4096,
    copy_mib: CopyOpt = 256,
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """Prompt processing and generation of engines called directly, like llama-bench."""
    from agentport.bench.scenarios import EngineConfig, EngineRun, run_engines

    run = EngineRun(engine or ["llamacpp"], _model_path(model), _threads(threads), ctx, copy_mib)
    with _stoppable(), reporting():
        record = run_engines(run, EngineConfig(pp, tg, reps, warmup))
    _emit(record, out)


@bench_app.command("serve")
def serve_command(
    target: Annotated[
        str, typer.Option(help="agentport[:dialect], llama-server[:dialect] or NAME=URL,DIALECT.")
    ] = "agentport",
    requests: Annotated[int, typer.Option(help="Requests per round.")] = 8,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 1,
    tokens: Annotated[int, typer.Option(help="Tokens generated per request.")] = 128,
    prompt_words: Annotated[int, typer.Option(help="Words of each prompt.")] = 100,
    rounds: Annotated[int, typer.Option(help="Counted rounds.")] = 1,
    warmup: Annotated[int, typer.Option(help="Uncounted rounds first.")] = 1,
    max_foreign_cpu: ForeignOpt = None,
    model: ModelOpt = None,
    model_name: ModelNameOpt = "smollm2:135m",
    threads: ThreadsOpt = None,
    ctx: CtxOpt = 8192,
    llama_bin: LlamaBinOpt = None,
    copy_mib: CopyOpt = 256,
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """N requests at concurrency C against one server, in its dialect."""
    from agentport.bench.scenarios import LoadConfig, run_http

    with _stoppable(), reporting():
        foreign = _share(max_foreign_cpu)
        cfg = LoadConfig(requests, concurrency, tokens, prompt_words, rounds, warmup, foreign)
        run = _http_run(
            [target], model, model_name, threads, ctx, llama_bin, None, copy_mib, concurrency
        )
        record = run_http("serve", run, cfg)
    _emit(record, out)


@bench_app.command("compare")
def compare_command(
    target: TargetOpt = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Target the others are shown as ratios of (default: llama-server)."),
    ] = None,
    rounds: Annotated[int, typer.Option(help="Counted rounds, alternating targets.")] = 5,
    warmup: Annotated[int, typer.Option(help="Uncounted rounds first.")] = 1,
    requests: Annotated[int, typer.Option(help="Requests per target and round.")] = 1,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 1,
    tokens: Annotated[int, typer.Option(help="Tokens generated per request.")] = 128,
    prompt_words: Annotated[int, typer.Option(help="Words of each prompt.")] = 100,
    baseline: Annotated[
        Path | None, typer.Option(help="A recorded run to gate this one against.")
    ] = None,
    max_regression: Annotated[
        str, typer.Option(help="Regression allowed beyond the run-to-run spread.")
    ] = "5%",
    max_foreign_cpu: ForeignOpt = None,
    model: ModelOpt = None,
    model_name: ModelNameOpt = "smollm2:135m",
    threads: ThreadsOpt = None,
    ctx: CtxOpt = 8192,
    llama_bin: LlamaBinOpt = None,
    copy_mib: CopyOpt = 256,
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """Several targets in one run, alternating A B A B; exit 3 on a regression past --baseline."""
    from agentport.bench.scenarios import LoadConfig, run_http

    targets = target or ["agentport", "llama-server"]
    ref = reference or _default_reference(targets)
    with _stoppable(), reporting():
        foreign = _share(max_foreign_cpu)
        cfg = LoadConfig(requests, concurrency, tokens, prompt_words, rounds, warmup, foreign)
        run = _http_run(
            targets, model, model_name, threads, ctx, llama_bin, ref, copy_mib, concurrency
        )
        record = run_http("compare", run, cfg)
    _emit(record, out)
    with reporting():
        _gate(record, baseline, max_regression)


@bench_app.command("report")
def report_command(
    files: Annotated[list[Path], typer.Argument(help="Records written by earlier runs.")],
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """Render earlier records together: one table, one plot."""
    import time

    from agentport.bench.report import load_record, plot, render_markdown

    with reporting():
        records = [load_record(path) for path in files]
    text = render_markdown(records)
    typer.echo(text)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"report-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".md").write_text(text)
    plot(records, stem.with_suffix(".png"))
    err_console.print(f"report: {stem}.md (.png)", markup=False, soft_wrap=True)


@bench_app.command("run")
def run_command(
    baseline: Annotated[
        Path | None, typer.Option(help="A recorded compare run to gate this one against.")
    ] = None,
    max_regression: Annotated[
        str, typer.Option(help="Regression allowed beyond the run-to-run spread.")
    ] = "5%",
    rounds: Annotated[int, typer.Option(help="Counted rounds of the comparison.")] = 5,
    max_foreign_cpu: ForeignOpt = None,
    model: ModelOpt = None,
    threads: ThreadsOpt = None,
    llama_bin: LlamaBinOpt = None,
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """The standard set: engines (llama.cpp, MLX where it imports), then agentport vs llama-server.

    Exits 3 when --baseline shows a regression.
    """
    from agentport.bench.scenarios import (
        EngineConfig,
        EngineRun,
        LoadConfig,
        run_engines,
        run_http,
    )

    path, n = _model_path(model), _threads(threads)
    with _stoppable(), reporting():
        _emit(run_engines(EngineRun(["llamacpp", "mlx"], path, n), EngineConfig()), out)
        run = _http_run(
            ["agentport", "llama-server"],
            path,
            "smollm2:135m",
            n,
            8192,
            llama_bin,
            "llama-server",
            256,
        )
        cfg = LoadConfig(rounds=rounds, max_foreign=_share(max_foreign_cpu))
        record = run_http("compare", run, cfg)
    _emit(record, out)
    with reporting():
        _gate(record, baseline, max_regression)


SCRIPT_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}


@bench_app.command("agent-loop", context_settings=SCRIPT_ARGS, add_help_option=False)
def agent_loop_command(ctx: typer.Context) -> None:
    """Turns of a Claude Code-shaped tool loop, ours vs llama-server: bench/agent_loop.py."""
    _run_script("agent_loop.py", ctx.args)


@bench_app.command("tool-calls", context_settings=SCRIPT_ARGS, add_help_option=False)
def tool_calls_command(ctx: typer.Context) -> None:
    """BFCL-format tool-call cases through the official clients: bench/tool_calls.py."""
    _run_script("tool_calls.py", ctx.args)


def _run_script(name: str, args: list[str]) -> None:
    import subprocess
    import sys

    from agentport.bench.targets import REPO_ROOT

    script = REPO_ROOT / "bench" / name
    if not script.is_file():
        fail(f"bench/{name} is part of the source checkout, which is not here")
    raise typer.Exit(subprocess.call([sys.executable, str(script), *args]))
