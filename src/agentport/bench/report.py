"""Benchmark reports: the JSON record of a run, its markdown table and its PNG plot.

A record is a plain dict, written as JSON and read back by `agentport bench report` and the
regression gate. It holds the scenario and its configuration, the targets and their versions,
the engine, the model (file, sha256 digest, quantization), threads, the hardware (CPU model,
cores, RAM, GPU if any), the git commit, the decode bound (`bandwidth.py`) and, per target, the
raw samples of every metric (`metrics.py`) plus the per-round medians that ratios and the gate
use. Everything shown is recomputed from those samples, so old records render the same way.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from agentport.bench.cpu import CONTENTION_SHARE
from agentport.bench.metrics import LABELS, percentile, summarize

SCHEMA = 1
DIGEST_NAME = re.compile(r"^sha256[-:]([0-9a-f]{64})$")
RATE_METRIC = {"engine": "tg_tps"}  # the decode-rate metric of a scenario (default decode_tps)
SIDE_METRIC = {"engine": "pp_tps"}  # the second panel of the plot (default ttft_s)
SKIP = ("threads", "targets")  # configuration the header line shows otherwise

# ---------------------------------------------------------------------------- facts of the run


def hardware() -> dict:
    """CPU model, cores, RAM and GPU (if any) of this machine."""
    import psutil

    return {
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "system": platform.system(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_logical": psutil.cpu_count(logical=True),
        "ram_bytes": psutil.virtual_memory().total,
        "gpu": _gpu(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> str | None:
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return "Apple Silicon GPU (Metal)"
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]
        try:
            out = subprocess.run(query, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        return "; ".join(line.strip() for line in out.splitlines() if line.strip()) or None
    return None


def git_commit(root: Path) -> dict:
    """The checkout's commit and whether tracked files differ from it (read-only git calls)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if dirty is None else bool(dirty)}


def versions() -> dict:
    """Versions of agentport, Python and the engine libraries that are installed."""
    from agentport import __version__

    out = {"agentport": __version__, "python": platform.python_version()}
    for dist in ("llama-cpp-python", "mlx", "mlx-lm", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def model_facts(path: Path) -> dict:
    """File name, sha256 digest, size, architecture, quantization and parameters of a GGUF."""
    from agentport.bench.bandwidth import model_shape

    shape = model_shape(path)
    return {
        "file": path.name,
        "digest": "sha256:" + file_digest(path),
        "size": path.stat().st_size,
        "architecture": shape.architecture,
        "quant": shape.quantization,
        "parameters": shape.parameter_count,
        "n_ctx_train": shape.n_ctx_train,
    }


def file_digest(path: Path) -> str:
    """The sha256 of a file; a content-addressed blob's name already is it."""
    if match := DIGEST_NAME.match(path.name):
        return match.group(1)
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def new_record(scenario: str, config: dict, root: Path) -> dict:
    """A record's frame: everything but targets, results and the bound."""
    return {
        "schema": SCHEMA,
        "scenario": scenario,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config,
        "versions": versions(),
        "hardware": hardware(),
        "git": git_commit(root),
        "targets": [],
        "reference": None,
        "bound": None,
        "results": {},
    }


# ---------------------------------------------------------------------------- summaries


def summary(record: dict) -> dict[str, dict[str, dict]]:
    """target -> metric -> median, p10, p90, p99, ... of its samples."""
    out: dict[str, dict[str, dict]] = {}
    for name, result in record["results"].items():
        stats = {m: summarize(v) for m, v in result["samples"].items()}
        out[name] = {m: s for m, s in stats.items() if s is not None}
    return out


def median_of(record: dict, target: str, metric: str) -> float | None:
    values = record["results"].get(target, {}).get("samples", {}).get(metric) or []
    return percentile(values, 50) if values else None


def ratio_to_reference(record: dict, target: str, metric: str) -> float | None:
    """Median of ``target`` over median of the record's reference target, for one metric."""
    reference = record.get("reference")
    if not reference or reference not in record["results"]:
        return None
    mine, theirs = median_of(record, target, metric), median_of(record, reference, metric)
    return mine / theirs if mine is not None and theirs else None


def round_ratios(record: dict, target: str, metric: str) -> list[float]:
    """Per counted round, the target's median over the reference's: the ratio's own spread."""
    reference = record.get("reference")
    if not reference or reference not in record["results"]:
        return []
    mine = record["results"][target].get("round_medians", {}).get(metric, [])
    theirs = record["results"][reference].get("round_medians", {}).get(metric, [])
    return [a / b for a, b in zip(mine, theirs, strict=False) if a is not None and b]


def rate_metric(record: dict) -> str:
    return RATE_METRIC.get(record["scenario"], "decode_tps")


# ---------------------------------------------------------------------------- markdown

HTTP_COLUMNS = (
    ("decode_tps", "median", 1.0),
    ("decode_tps", "p90", 1.0),
    ("tpot_s", "median", 1000.0),
    ("itl_s", "p99", 1000.0),
    ("ttft_s", "median", 1000.0),
    ("ttft_s", "p99", 1000.0),
    ("e2e_s", "median", 1000.0),
    ("prompt_tps", "median", 1.0),
    ("cpu_per_token_s", "median", 1000.0),
)
ENGINE_COLUMNS = (
    ("pp_tps", "median", 1.0),
    ("pp_tps", "p90", 1.0),
    ("tg_tps", "median", 1.0),
    ("tg_tps", "p90", 1.0),
    ("ttft_s", "median", 1000.0),
)


def _header(metric: str, stat: str, scale: float) -> str:
    unit = " ms" if scale == 1000.0 else ""
    return f"{LABELS[metric]} {stat}{unit}"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return "" if value is None else str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def table_rows(record: dict, with_run: bool) -> tuple[list[str], list[list]]:
    columns = ENGINE_COLUMNS if record["scenario"] == "engine" else HTTP_COLUMNS
    if (record["config"].get("concurrency") or 1) > 1:  # the concurrency scenario
        columns = (*columns, ("throughput_tps", "median", 1.0))
    rate = rate_metric(record)
    stats, bound = summary(record), record.get("bound")
    headers = [_header(*c) for c in columns]
    headers = ["target", *headers, "n", f"x {record.get('reference') or 'ref'}", "of bound"]
    rows = []
    for target in record["results"]:
        cells = [_stat(stats[target], m, s, k) for m, s, k in columns]
        n = stats[target].get(rate, {}).get("n")
        rows.append([target, *cells, n, ratio_to_reference(record, target, rate)])
        rows[-1].append(_fraction(bound, median_of(record, target, rate)))
    if with_run:
        headers.insert(0, "run")
        rows = [[run_label(record), *row] for row in rows]
    return headers, rows


def _stat(stats: dict, metric: str, stat: str, scale: float) -> float | None:
    value = stats.get(metric, {}).get(stat)
    return None if value is None else value * scale


def _fraction(bound: dict | None, rate: float | None) -> float | None:
    if not bound or rate is None:
        return None
    return rate / bound["tokens_per_second"]


def run_label(record: dict) -> str:
    return f"{record['scenario']} {record['timestamp'][:16]}"


def bound_line(record: dict) -> str | None:
    b = record.get("bound")
    if not b:
        return None
    return (
        f"Decode bound: {b['bandwidth_gbs']:.1f} GB/s copy bandwidth / "
        f"({b['weights_bytes'] / 1e6:.1f} MB weights + {b['kv_bytes_per_token'] / 1e3:.1f} kB "
        f"KV x {b['context_tokens']} tokens) = {b['tokens_per_second']:.1f} tokens/s."
    )


def header_line(record: dict) -> str:
    cfg, model, hw = record["config"], record.get("model") or {}, record["hardware"]
    ram = (hw.get("ram_bytes") or 0) / 2**30
    parts = [
        f"{record['scenario']} scenario, {model.get('file', '?')} ({model.get('quant', '?')})",
        f"{cfg.get('threads', '?')} threads",
        ", ".join(f"{k} {v}" for k, v in cfg.items() if k not in SKIP and v is not None),
        f"{hw.get('cpu')}, {hw.get('cores_logical')} CPUs, {ram:.0f} GiB"
        + (f", {hw['gpu']}" if hw.get("gpu") else ""),
        f"commit {(record['git'].get('commit') or '?')[:10]}"
        + (" (modified)" if record["git"].get("dirty") else ""),
    ]
    return "; ".join(parts) + "."


def warnings(record: dict) -> list[str]:
    lines = []
    wanted = record["config"].get("rounds") or record["config"].get("reps")
    counted = max(
        (
            len(r.get("round_medians", {}).get(rate_metric(record), []))
            for r in record["results"].values()
        ),
        default=0,
    )
    if wanted and counted < wanted:
        lines.append(f"WARNING: only {counted} of {wanted} rounds were counted.")
    discarded = max((r.get("discarded_rounds") or 0 for r in record["results"].values()), default=0)
    if discarded:
        limit = record["config"].get("max_foreign")
        lines.append(
            f"{discarded} rounds were discarded and run again: other processes took more than "
            f"{limit:.0%} of the CPU."
        )
    for target, result in record["results"].items():
        if result.get("wrong_token_count"):
            bad = ", ".join(result["wrong_token_count"])
            lines.append(f"WARNING: {target} did not produce the requested tokens in {bad}.")
        shares = [s for s in result.get("foreign_cpu") or [] if s is not None]
        if shares and max(shares) > CONTENTION_SHARE:
            lines.append(
                f"WARNING: other processes took up to {max(shares):.0%} of the CPU during "
                f"{target}'s counted rounds: its numbers are not reliable."
            )
        if result.get("skipped"):
            lines.append(f"{target}: skipped, {result['skipped']}")
    return lines


def render_markdown(records: Sequence[dict]) -> str:
    """One table over all records (a run column when there are several), with each record's
    configuration, decode bound and warnings underneath."""
    with_run = len(records) > 1
    tables: dict[tuple[str, ...], list[list]] = {}  # one table per set of columns
    for record in records:
        headers, rows = table_rows(record, with_run)
        tables.setdefault(tuple(headers), []).extend(rows)
    lines = []
    for headers, rows in tables.items():
        lines += [markdown_table(headers, rows), ""]
    for record in records:
        prefix = f"{run_label(record)}: " if with_run else ""
        lines.append(prefix + header_line(record))
        if line := bound_line(record):
            lines.append(prefix + line)
        lines += [prefix + line for line in warnings(record)]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------- plot


def plot(records: Sequence[dict], path: Path) -> None:
    """Bars of the decode rate (p10-p90 whiskers) with each record's bound as a dashed line,
    and beside them TTFT (HTTP scenarios) or prompt processing (the engine scenario)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    labels, x, bound_drawn, side = [], 0, False, _side(records)
    for record in records:
        names = [t for t in record["results"] if record["results"][t]["samples"]]
        start = x
        for name in names:
            _bar(left, x, record, name, rate_metric(record))
            _bar(right, x, record, name, side)
            labels.append(name if len(records) == 1 else f"{name}\n{run_label(record)[-11:]}")
            x += 1
        if record.get("bound") and names:
            left.hlines(
                record["bound"]["tokens_per_second"],
                start - 0.4,
                x - 0.6,
                colors="black",
                linestyles="dashed",
                label=None if bound_drawn else "bandwidth bound",
            )
            bound_drawn = True
    for ax, metric in ((left, rate_metric(records[0])), (right, side)):
        ax.set_xticks(range(x), labels, fontsize=8)
        ax.set_ylabel(LABELS[metric] + (" (ms)" if metric.endswith("_s") else ""))
        ax.set_ylim(bottom=0)
        ax.grid(True, axis="y", alpha=0.3)
    if bound_drawn:
        left.legend(loc="best", fontsize=8)
    fig.suptitle(_title(records), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _side(records: Sequence[dict]) -> str:
    """The second panel's metric: the scenario's own, or TTFT when scenarios are mixed."""
    sides = {SIDE_METRIC.get(r["scenario"], "ttft_s") for r in records}
    return sides.pop() if len(sides) == 1 else "ttft_s"


def _bar(ax, x: int, record: dict, target: str, metric: str) -> None:
    values = record["results"][target]["samples"].get(metric) or []
    if not values:
        return
    scale = 1000.0 if metric.endswith("_s") else 1.0
    mid, lo, hi = (percentile(values, q) * scale for q in (50, 10, 90))
    ax.bar(x, mid, yerr=[[mid - lo], [hi - mid]], capsize=4, color=f"C{x % 10}")
    ax.annotate(f"{mid:.1f}", (x, mid), ha="center", va="bottom", fontsize=8)


def _title(records: Sequence[dict]) -> str:
    r = records[0]
    model = (r.get("model") or {}).get("file", "")
    threads = r["config"].get("threads", "?")
    return f"{r['scenario']}: {model}, {threads} threads, {r['hardware']['cpu']}"


# ---------------------------------------------------------------------------- files


def write_record(record: dict, out_dir: Path) -> dict[str, Path]:
    """Write a load or engine record as ``<scenario>-<time>.json``, ``.md`` and ``.png``."""
    return write_outputs(record, render_markdown([record]), out_dir, lambda p: plot([record], p))


def write_outputs(
    record: dict,
    markdown: str,
    out_dir: Path,
    draw: Callable[[Path], None] | None = None,
    stamp: str | None = None,
) -> dict[str, Path]:
    """Write ``<scenario>-<stamp>.json`` and ``.md`` under ``out_dir``, and ``.png`` with
    ``draw``; ``stamp`` defaults to now (a run that rewrites its files passes its own)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"{record['scenario']}-{stamp or time.strftime('%Y%m%d-%H%M%S')}"
    paths = {ext: stem.with_suffix(f".{ext}") for ext in ("json", "md")}
    paths["json"].write_text(json.dumps(record, indent=2) + "\n")
    paths["md"].write_text(markdown)
    if draw is not None:
        paths["png"] = stem.with_suffix(".png")
        draw(paths["png"])
    return paths


def load_record(path: Path) -> dict:
    """A record written by `write_record`; raises InvalidRequestError for anything else."""
    from agentport.errors import InvalidRequestError

    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidRequestError(f"cannot read benchmark record {path}: {exc}") from exc
    if not isinstance(record, dict) or record.get("schema") != SCHEMA or "results" not in record:
        raise InvalidRequestError(f"{path} is not a benchmark record (schema {SCHEMA})")
    return record
