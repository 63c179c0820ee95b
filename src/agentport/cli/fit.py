"""`agentport fit`: would a model fit this machine (or one of a given size), and how.

No server is needed: the model's GGUF header is read from the local store (or a file), the
machine is probed (or described by `--ram`), and the planner's guard makes the same plan a load
would. `--tiers` prints which common agent models fit 16, 24 and 48 GB machines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from agentport.cli.console import console, fail, load_settings, reporting
from agentport.config import Settings, parse_size
from agentport.errors import InvalidRequestError
from agentport.planner.estimate import MemoryEstimate
from agentport.planner.gguf_meta import ModelShape, format_params, read_shape
from agentport.planner.guard import DoesNotFit, LoadPlan, LoadRequest
from agentport.planner.plan import (
    estimate_as_asked,
    load_budget,
    load_request,
    plan_for,
    reserve_for,
)
from agentport.planner.probes import DeviceMemory, probe_device
from agentport.planner.tiers import TierRow, tier_table

GIB = 1 << 30
MIB = 1 << 20


@dataclass(slots=True)
class FitOptions:
    model: str | None = None
    ctx: int | None = None
    parallel: int | None = None
    kv_type: str | None = None
    ram: str | None = None
    tiers: bool = False
    as_json: bool = False


@dataclass(slots=True)
class FitReport:
    """Everything the table (or the JSON) shows about one model on one machine."""

    model: str
    shape: ModelShape
    device: DeviceMemory
    described: bool  # True: a machine of --ram size, not this one
    reserve: int
    budget: int
    request: LoadRequest
    plan: LoadPlan | None
    error: str | None = None

    @property
    def fits(self) -> bool:
        return self.plan is not None

    @property
    def estimate(self) -> MemoryEstimate:
        """The plan's bytes, or those of the configuration asked for when nothing fits."""
        if self.plan is not None:
            return self.plan.estimate
        return estimate_as_asked(self.shape, self.request, self.request.n_ctx)


def fit_command(options: FitOptions) -> None:
    """The body of `agentport fit`; exits 1 when the model does not fit."""
    if options.model is None and not options.tiers:
        fail("name a model (or a .gguf file), or pass --tiers")
    settings = load_settings()
    with reporting():
        report = fit_report(settings, options) if options.model else None
        rows = tier_table() if options.tiers else None
    if options.as_json:
        typer.echo(json.dumps(_json(report, rows), indent=2))
    else:
        if report is not None:
            console.print(fit_table(report))
        if rows is not None:
            console.print(tiers_table(rows))
    if report is not None and not report.fits:
        raise typer.Exit(code=1)


def fit_report(settings: Settings, options: FitOptions) -> FitReport:
    path = model_path(settings, options.model or "")
    shape = read_shape(path, settings.metadata_cache)
    device, described = _machine(options.ram)
    asked = _asked(settings, options, described)
    reserve, budget = reserve_for(asked, device), load_budget(asked, device, ())
    report = FitReport(
        options.model or "", shape, device, described, reserve, budget, load_request(asked), None
    )
    try:
        report.plan = plan_for(asked, shape, device)
    except DoesNotFit as exc:
        report.error = exc.message
    return report


def model_path(settings: Settings, model: str) -> Path:
    """A .gguf file given by path, or the GGUF of a model in the local store."""
    candidate = Path(model).expanduser()
    if candidate.suffix == ".gguf" or candidate.is_file():
        if not candidate.is_file():
            raise InvalidRequestError(f"no such file: {model}")
        return candidate
    from agentport.store.embedded import register_embedded
    from agentport.store.models import ModelStore

    store = ModelStore(settings.models_dir)
    register_embedded(store)
    return store.get(settings.aliases.get(model, model)).model_path


def _machine(ram: str | None) -> tuple[DeviceMemory, bool]:
    """This machine, probed; or one of `ram` bytes with all of them free (described: True)."""
    if ram is None:
        return probe_device(), False
    try:
        size = parse_size(ram)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="ram") from exc
    if size <= 0:
        raise InvalidRequestError("--ram must be more than 0", param="ram")
    return DeviceMemory(total=size, available=size), True


def _asked(settings: Settings, options: FitOptions, described: bool) -> Settings:
    """The settings with the command's options in place; a described machine gets the default
    reserve for its size, not this machine's configured one."""
    kv_type = options.kv_type or settings.kv_type
    if kv_type not in ("auto", "f16", "q8_0", "q4_0"):
        raise InvalidRequestError(f"unknown KV cache type {kv_type!r}", param="kv_type")
    update: dict[str, Any] = {
        "context_length": options.ctx or settings.context_length,
        "parallel": options.parallel or settings.parallel,
        "kv_type": kv_type,
    }
    if described:
        update["memory_reserve"] = 0
    return settings.model_copy(update=update)


# --- tables ----------------------------------------------------------------------------------


def size_text(size: int) -> str:
    """Memory in binary units, as RAM is sold: 6.4 GiB, 98 MiB."""
    if abs(size) >= GIB:
        return f"{size / GIB:.1f} GiB"
    return f"{size / MIB:.0f} MiB"


def _table(title: str, *columns: str) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
    )
    for column in columns:
        table.add_column(column, no_wrap=column == "MODEL")
    return table


def fit_table(report: FitReport) -> Table:
    """ITEM / VALUE rows: the model, the plan's bytes, the reserve and budget, the verdict."""
    table = _table(_title(report), "ITEM", "VALUE")
    estimate = report.estimate
    for item, value in (
        ("model", _model_text(report.shape)),
        ("context", _context_text(report)),
        ("weights", size_text(estimate.weights)),
        ("KV cache", size_text(estimate.kv)),
        ("compute", size_text(estimate.compute)),
        ("total", size_text(estimate.total)),
        ("reserve", f"{size_text(report.reserve)} (IDE, browser, OS)"),
        ("budget", size_text(report.budget)),
        ("machine", _machine_text(report)),
    ):
        table.add_row(item, Text(value))
    table.add_row("verdict", _verdict(report))
    return table


def _title(report: FitReport) -> str:
    where = f"a {size_text(report.device.total)} machine" if report.described else "this machine"
    return f"{report.model} on {where}"


def _model_text(shape: ModelShape) -> str:
    facts = [shape.architecture, format_params(shape.parameter_count), shape.quantization]
    return f"{shape.name or '?'} ({', '.join(f for f in facts if f)})"


def _context_text(report: FitReport) -> str:
    plan, request = report.plan, report.request
    if plan is None:
        slots, kv = request.parallel or 1, request.kv_type or "f16"
        return f"{request.n_ctx} tokens x {slots} slot(s), {kv} KV cache"
    text = f"{plan.n_ctx} tokens x {plan.parallel} slot(s), {plan.kv_type} KV cache"
    return f"{text} ({plan.rope_scaling})" if plan.rope_scaling else text


def _machine_text(report: FitReport) -> str:
    device = report.device
    parts = [f"{size_text(device.total)} total", f"{size_text(device.available)} available"]
    if device.swap_used:
        parts.append(f"{size_text(device.swap_used)} swap used")
    if device.metal_limit is not None:
        parts.append(f"Metal limit {size_text(device.metal_limit)}")
    if device.gpu_free is not None:
        parts.append(f"GPU {size_text(device.gpu_free)} free")
    if device.pressure != "ok":
        parts.append(f"pressure {device.pressure}")
    return ", ".join(parts)


def _verdict(report: FitReport) -> Text:
    if report.plan is None:
        return Text(f"does not fit: {report.error}", style="bold red")
    if report.plan.notes:
        return Text("fits after adapting: " + "; ".join(report.plan.notes), style="yellow")
    return Text("fits", style="bold green")


def tiers_table(rows: list[TierRow]) -> Table:
    """MODEL, WEIGHTS, the total at the floor, and a verdict per machine size."""
    first = rows[0].cells if rows else ()
    floor = first[0].floor if first else 0
    quant = rows[0].quantization if rows else ""
    title = f"{quant} agent models at {floor // 1024}k context, with an IDE and a browser open"
    columns = ("MODEL", "WEIGHTS", f"AT {floor // 1024}K", *(f"{c.machine_gb} GB" for c in first))
    table = _table(title, *columns)
    for row in rows:
        table.add_row(
            Text(row.tag or row.name),
            size_text(row.weights),
            size_text(row.total_at_floor),
            *(_tier_cell(cell.fits, cell.verdict) for cell in row.cells),
        )
    return table


def _tier_cell(fits: bool, verdict: str) -> Text:
    return Text(verdict, style="green" if fits else "red")


# --- JSON ------------------------------------------------------------------------------------


def _json(report: FitReport | None, rows: list[TierRow] | None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if report is not None:
        data.update(report_json(report))
    if rows is not None:
        data["tiers"] = [tier_json(row) for row in rows]
    return data


def report_json(report: FitReport) -> dict[str, Any]:
    estimate, plan = report.estimate, report.plan
    device = report.device
    return {
        "model": report.model,
        "name": report.shape.name,
        "fits": report.fits,
        "n_ctx": plan.n_ctx if plan else report.request.n_ctx,
        "parallel": plan.parallel if plan else report.request.parallel or 1,
        "kv_type": plan.kv_type if plan else report.request.kv_type or "f16",
        "rope_scaling": plan.rope_scaling if plan else None,
        "weights": estimate.weights,
        "kv_cache": estimate.kv,
        "compute": estimate.compute,
        "total": estimate.total,
        "reserve": report.reserve,
        "budget": report.budget,
        "notes": list(plan.notes) if plan else [],
        "error": report.error,
        "machine": {
            "described": report.described,
            "total": device.total,
            "available": device.available,
            "swap_used": device.swap_used,
            "pressure": device.pressure,
            "metal_limit": device.metal_limit,
            "gpu_free": device.gpu_free,
        },
    }


def tier_json(row: TierRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "tag": row.tag,
        "quantization": row.quantization,
        "parameters": row.parameters,
        "weights": row.weights,
        "total_at_floor": row.total_at_floor,
        "machines": {
            str(cell.machine_gb): {
                "fits": cell.fits,
                "verdict": cell.verdict,
                "budget": cell.budget,
                "n_ctx": cell.plan.n_ctx if cell.plan else None,
                "kv_type": cell.plan.kv_type if cell.plan else None,
                "total": cell.plan.estimate.total if cell.plan else None,
            }
            for cell in row.cells
        },
    }
