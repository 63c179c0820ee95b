"""`agentport doctor`: the runbook as a command. For the model an agent will use it checks the
server, the model, the context, tool support, memory headroom, swap, memory pressure and disk;
each line is ok / warn / fail with one concrete fix, and any fail makes the exit code 1.

The checks are pure functions of a `Facts` object, so tests feed them fakes. `gather` collects
the facts: the server's over HTTP, the rest (device probes, the memory plan, free disk) locally,
so a machine without a running server is still checked. A fact that cannot be gathered is
recorded with the reason, and its check says so instead of crashing the command.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from agentport.cli.client import Client
from agentport.cli.console import console, load_settings
from agentport.cli.format import human_bytes
from agentport.config import Settings
from agentport.errors import AgentportError, InvalidRequestError, ServerNotRunningError
from agentport.store.names import parse_name

OK, WARN, FAIL = "ok", "warn", "fail"
PROMPT_TOKENS = 20_000  # Claude Code's system prompt and tool definitions
RECOMMENDED_CONTEXT = 32768
SWAP_WARN_BYTES = 256 * 1024**2
DISK_FAIL_BYTES = 2 * 1000**3
DISK_WARN_BYTES = 10 * 1000**3
QUICK_TIMEOUT = 3.0
SHOW_TIMEOUT = 300.0  # /api/show loads the model: seconds for a large one
SERVE_FIX = "run `agentport serve` (or `make serve`)"
KV_FIX = "use a q8_0 KV cache (AGENTPORT_KV_TYPE=q8_0)"
TOOLS_FIX = "use a model whose template takes tools (qwen2.5-coder, qwen3, llama3.1)"
GENERIC_MODEL_FIX = "use a smaller model or quantization (a 7B at Q4_K_M), or close other apps"
# Sizes (billions of parameters) of common agent model families, for "use X instead of Y".
FAMILY_SIZES: dict[str, tuple[float, ...]] = {
    "qwen2.5-coder": (0.5, 1.5, 3, 7, 14, 32),
    "qwen2.5": (0.5, 1.5, 3, 7, 14, 32, 72),
    "qwen3": (0.6, 1.7, 4, 8, 14, 32),
    "qwen3-coder": (30, 480),
    "llama3.1": (8, 70, 405),
    "llama3.2": (1, 3),
    "deepseek-r1": (1.5, 7, 8, 14, 32, 70),
    "deepseek-coder-v2": (16, 236),
    "gemma3": (1, 4, 12, 27),
    "mistral-small": (22, 24),
    "devstral": (24,),
}


# --- facts -----------------------------------------------------------------------------------


@dataclass(slots=True)
class DeviceFacts:
    total: int
    available: int
    swap_used: int = 0
    pressure: str = OK  # "ok" | "warn" | "critical"
    pressure_detail: str = ""


@dataclass(slots=True)
class PlanFacts:
    """What the planner's guard would load: context per sequence, slots, KV type, bytes."""

    n_ctx: int
    parallel: int
    kv_type: str
    total: int
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class MemoryFacts:
    budget: int  # bytes the models may use, the reserve already kept back
    reserve: int  # bytes kept for the IDE, browser and OS
    floor: int  # the agent context floor `floor_total` is estimated at
    floor_total: int  # estimate at the floor, configured KV type (f16 if auto), slots (1 if auto)
    kv_type: str | None = None  # configured; None: the planner chooses
    parallel: int | None = None  # configured; None: the planner chooses
    plan: PlanFacts | None = None
    plan_error: str = ""  # the guard's refusal: nothing fits


@dataclass(slots=True)
class Facts:
    model: str
    base_url: str
    context_setting: int = RECOMMENDED_CONTEXT
    server_version: str | None = None  # None: no server answered
    server_error: str = ""  # an answer that was not a version (a connection refusal is not kept)
    listed: bool | None = None  # in the server's /api/tags; None: not asked
    in_store: bool | None = None  # its GGUF found in the local store; None: not looked
    capabilities: list[str] | None = None
    template: str | None = None
    show_error: str = ""
    loaded_context: int | None = None  # /api/ps context_length when the model is loaded
    device: DeviceFacts | None = None
    memory: MemoryFacts | None = None
    memory_error: str = ""  # why `device` or `memory` is missing
    disk_path: str = ""
    disk_free: int | None = None


@dataclass(slots=True, frozen=True)
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail"
    finding: str
    fix: str = ""  # one concrete fix; empty when ok


# --- checks ----------------------------------------------------------------------------------


def check_server(facts: Facts) -> Check:
    if facts.server_version is not None:
        return Check("server", OK, f"agentport {facts.server_version} at {facts.base_url}")
    detail = f": {facts.server_error}" if facts.server_error else ""
    return Check("server", FAIL, f"no server answers at {facts.base_url}{detail}", SERVE_FIX)


def check_model(facts: Facts) -> Check:
    pull = f"agentport pull {facts.model}"
    if facts.listed is not None:
        where = "the server's store"
        if facts.listed:
            return Check("model", OK, f"{facts.model} is in {where}")
        return Check("model", FAIL, f"{facts.model} is not in {where}", pull)
    if facts.in_store:
        return Check("model", OK, f"{facts.model} is in the local store (no server to ask)")
    if facts.in_store is False:
        return Check("model", FAIL, f"{facts.model} is not in the local store", pull)
    return Check("model", WARN, f"not checked: {facts.memory_error or 'no store to look in'}", pull)


def check_context(facts: Facts) -> Check:
    context, source = _context(facts)
    if context is None:
        return _unknown_context(facts)
    finding = (
        f"{context} tokens {source}; Claude Code's prompt is about {PROMPT_TOKENS // 1000}k "
        f"tokens, {RECOMMENDED_CONTEXT} recommended"
    )
    if context < PROMPT_TOKENS:
        return Check("context", FAIL, finding, _context_fix(facts, context))
    if context < RECOMMENDED_CONTEXT:
        return Check("context", WARN, finding, _context_fix(facts, context))
    return Check("context", OK, finding)


def _context(facts: Facts) -> tuple[int | None, str]:
    if facts.loaded_context:
        return facts.loaded_context, "(loaded)"
    plan = facts.memory.plan if facts.memory else None
    if plan is not None:
        return plan.n_ctx, "(planned for this machine)"
    return None, ""


def _unknown_context(facts: Facts) -> Check:
    if facts.memory and facts.memory.plan_error:
        finding = f"no context fits in memory: {facts.memory.plan_error}"
        return Check("context", FAIL, finding, model_fix(facts))
    why = facts.memory_error or "the model is neither loaded nor planned"
    return Check("context", WARN, f"not known: {why}", _unchecked_fix(facts))


def _context_fix(facts: Facts, context: int) -> str:
    if facts.context_setting < RECOMMENDED_CONTEXT:
        return f"set AGENTPORT_CONTEXT_LENGTH={RECOMMENDED_CONTEXT}"
    plan = facts.memory.plan if facts.memory else None
    if plan is not None and plan.n_ctx >= RECOMMENDED_CONTEXT > context:
        return f"restart `agentport serve` with AGENTPORT_CONTEXT_LENGTH={RECOMMENDED_CONTEXT}"
    if plan is None or plan.kv_type == "f16":
        return KV_FIX
    return model_fix(facts)


def check_tools(facts: Facts) -> Check:
    if facts.capabilities is None and facts.template is None:
        return _tools_unchecked(facts)
    if takes_tools(facts.capabilities, facts.template):
        return Check("tools", OK, "the chat template takes tool definitions")
    finding = (
        "the chat template takes no tools; agentport describes them in the system prompt "
        "instead, which small models follow less reliably"
    )
    return Check("tools", WARN, finding, TOOLS_FIX)


def _tools_unchecked(facts: Facts) -> Check:
    if facts.server_version is None:
        return Check("tools", WARN, "not checked: no server answers", SERVE_FIX)
    if facts.listed is False:
        finding = "not checked: the model is not in the server's store"
        return Check("tools", WARN, finding, f"agentport pull {facts.model}")
    finding = f"not checked: {facts.show_error or 'the server did not describe the model'}"
    return Check("tools", WARN, finding, f"run `agentport show {facts.model}` to see why")


def takes_tools(capabilities: list[str] | None, template: str | None) -> bool:
    """Whether the model's own chat template renders tool definitions. The server lists "tools"
    for every model (it falls back to a tools system prompt), so the template decides, by the
    rule agentport's renderer uses: it mentions `tools`."""
    if capabilities is not None and "tools" not in capabilities:
        return False
    return template is None or "tools" in template


def check_memory(facts: Facts) -> Check:
    memory = facts.memory
    if memory is None:
        return Check("memory", WARN, f"not checked: {facts.memory_error}", _unchecked_fix(facts))
    reserve = human_bytes(memory.reserve)
    kept = f"budget {human_bytes(memory.budget)} after {reserve} kept for other apps"
    kv = memory.kv_type or "f16"
    needs = f"needs {human_bytes(memory.floor_total)} at {memory.floor} tokens ({kv} KV)"
    if memory.plan is None:
        return Check("memory", FAIL, f"{needs}, {kept}: {memory.plan_error}", model_fix(facts))
    if memory.floor_total <= memory.budget:
        return Check("memory", OK, f"{needs}, {kept}")
    plan = memory.plan
    adapted = "; ".join(plan.notes) or f"{plan.kv_type} KV, {plan.parallel} slot(s)"
    finding = f"{needs}, {kept}; fits only as adapted: {adapted}"
    return Check("memory", WARN, finding, _adapted_fix(facts, memory, plan))


def _adapted_fix(facts: Facts, memory: MemoryFacts, plan: PlanFacts) -> str:
    if plan.n_ctx >= memory.floor and plan.kv_type == "q8_0" and memory.kv_type != "q8_0":
        return "set a q8_0 KV cache (AGENTPORT_KV_TYPE=q8_0)"
    if plan.n_ctx >= memory.floor and plan.parallel < (memory.parallel or 1):
        return "set AGENTPORT_PARALLEL=1"
    return model_fix(facts)


def _unchecked_fix(facts: Facts) -> str:
    if facts.in_store is False:
        return f"agentport pull {facts.model}"
    return f"run `agentport fit {facts.model}` to see the memory plan"


def check_swap(facts: Facts) -> Check:
    if facts.device is None:
        return Check("swap", WARN, f"not checked: {facts.memory_error}", "check `free -h`")
    used = facts.device.swap_used
    if used > SWAP_WARN_BYTES:
        fix = "close other applications (a model paged to swap slows every token)"
        return Check("swap", WARN, f"{human_bytes(used)} of swap in use", fix)
    return Check("swap", OK, f"{human_bytes(used)} of swap in use" if used else "no swap in use")


def check_pressure(facts: Facts) -> Check:
    device = facts.device
    if device is None:
        return Check("pressure", WARN, f"not checked: {facts.memory_error}", "check `free -h`")
    detail = f" ({device.pressure_detail})" if device.pressure_detail else ""
    finding = f"memory pressure {device.pressure}{detail}"
    if device.pressure == "critical":
        return Check("pressure", FAIL, finding, "close other applications, or use a smaller model")
    if device.pressure == "warn":
        return Check("pressure", WARN, finding, "close other apps, or set AGENTPORT_PARALLEL=1")
    return Check("pressure", OK, finding)


def check_disk(facts: Facts) -> Check:
    where = facts.disk_path or "the models disk"
    fix = f"free space on {where}, or point AGENTPORT_MODELS at a larger disk"
    if facts.disk_free is None:
        return Check("disk", WARN, f"not checked: {facts.disk_path or 'no models directory'}", fix)
    finding = f"{human_bytes(facts.disk_free)} free in {facts.disk_path}"
    if facts.disk_free < DISK_FAIL_BYTES:
        return Check("disk", FAIL, finding, fix)
    if facts.disk_free < DISK_WARN_BYTES:
        return Check("disk", WARN, finding, fix)
    return Check("disk", OK, finding)


CHECKS: tuple[Callable[[Facts], Check], ...] = (
    check_server,
    check_model,
    check_context,
    check_tools,
    check_memory,
    check_swap,
    check_pressure,
    check_disk,
)


def run_checks(facts: Facts) -> list[Check]:
    return [check(facts) for check in CHECKS]


def exit_code(checks: list[Check]) -> int:
    return 1 if any(check.status == FAIL for check in checks) else 0


# --- fixes that name a smaller model ---------------------------------------------------------


def model_fix(facts: Facts) -> str:
    """`use qwen2.5-coder:7b instead of :14b on 16 GB` when the family is known, else a generic
    fix. The model's size is scaled by how much of its estimate fits the budget."""
    memory, device = facts.memory, facts.device
    if memory is None or device is None or memory.floor_total <= 0:
        return GENERIC_MODEL_FIX
    smaller = smaller_model(facts.model, memory.budget / memory.floor_total)
    if smaller is None:
        return GENERIC_MODEL_FIX
    name, tag = smaller
    return f"use {name} instead of :{tag} on {round(device.total / 1024**3)} GB"


def smaller_model(model: str, scale: float) -> tuple[str, str] | None:
    """(a smaller model of the same family that fits `scale` x this one's size, this tag)."""
    try:
        name = parse_name(model)
    except InvalidRequestError:
        return None
    match = re.match(r"(\d+(?:\.\d+)?)b", name.tag)
    sizes = FAMILY_SIZES.get(name.model)
    if match is None or sizes is None:
        return None
    size = float(match.group(1))
    fitting = [s for s in sizes if s < size and s <= size * scale]
    if not fitting:
        return None
    return f"{name.model}:{max(fitting):g}b", name.tag


# --- gathering the facts ---------------------------------------------------------------------


def gather(settings: Settings, model: str) -> Facts:
    facts = Facts(model=model, base_url=settings.base_url, context_setting=settings.context_length)
    loaded = _gather_server(facts, settings)
    _gather_disk(facts, settings.models_dir)
    _gather_memory(facts, settings, loaded)
    return facts


def _gather_server(facts: Facts, settings: Settings) -> list[dict[str, Any]]:
    """Server facts; returns the loaded models of `/api/ps` (none when no server answers)."""
    try:
        with Client(settings, timeout=QUICK_TIMEOUT) as client:
            version = client.get_json("/api/version")
            facts.server_version = str(_get(version, "version") or "?")
            facts.listed = any(_same(facts.model, m) for m in _models(client.get_json("/api/tags")))
    except ServerNotRunningError:
        return []
    except AgentportError as exc:
        facts.server_error = facts.server_error or exc.message
        return []
    if facts.listed:
        _gather_show(facts, settings)
    try:
        with Client(settings, timeout=QUICK_TIMEOUT) as client:
            loaded = _models(client.get_json("/api/ps"))
    except AgentportError:
        return []
    mine = [m for m in loaded if _same(facts.model, m)]
    if mine and isinstance(mine[0].get("context_length"), int):
        facts.loaded_context = mine[0]["context_length"]
    return loaded


def _gather_show(facts: Facts, settings: Settings) -> None:
    """Capabilities and template from `/api/show`, which loads the model if it is not loaded."""
    try:
        with Client(settings, timeout=SHOW_TIMEOUT) as client:
            shown = client.request_json("POST", "/api/show", {"model": facts.model})
    except AgentportError as exc:
        facts.show_error = exc.message
        return
    capabilities = _get(shown, "capabilities")
    if isinstance(capabilities, list):
        facts.capabilities = [str(c) for c in capabilities]
    template = _get(shown, "template")
    facts.template = template if isinstance(template, str) else None


def _gather_disk(facts: Facts, folder: Path) -> None:
    path = folder
    while not path.exists() and path != path.parent:
        path = path.parent
    facts.disk_path = str(path)
    try:
        facts.disk_free = shutil.disk_usage(path).free
    except OSError:
        facts.disk_free = None


def _gather_memory(facts: Facts, settings: Settings, loaded: list[dict[str, Any]]) -> None:
    path = _local_gguf(settings, facts.model)
    facts.in_store = path is not None
    # The planner is read-only arithmetic and probes; whatever it raises becomes a finding, so
    # the other checks still run.
    try:
        from agentport.planner.probes import probe_device

        device = probe_device()
    except Exception as exc:
        facts.memory_error = f"the memory probes failed: {exc}"
        return
    facts.device = DeviceFacts(
        device.total, device.available, device.swap_used, device.pressure, device.pressure_detail
    )
    if path is None:
        facts.memory_error = f"{facts.model} is not in the local store"
        return
    try:
        facts.memory = plan_memory(settings, device, path, facts.model, loaded)
    except Exception as exc:
        facts.memory_error = f"the memory plan failed: {exc}"


def plan_memory(
    settings: Settings, device: Any, path: Path, model: str, loaded: list[dict[str, Any]]
) -> MemoryFacts:
    """The planner's estimate at the agent floor and the load plan for `model` on `device`,
    next to the models `loaded` (rows of `/api/ps`), as the server would make it."""
    from agentport.planner.gguf_meta import read_shape
    from agentport.planner.guard import AGENT_FLOOR, DoesNotFit
    from agentport.planner.plan import (
        estimate_as_asked,
        load_budget,
        load_request,
        plan_for,
        reserve_for,
    )

    shape = read_shape(path, settings.metadata_cache)
    request = load_request(settings)
    floor = estimate_as_asked(shape, request, AGENT_FLOOR)
    device, residents = residents_for(device, model, loaded)
    budget, reserve = load_budget(settings, device, residents), reserve_for(settings, device)
    memory = MemoryFacts(
        budget, reserve, AGENT_FLOOR, floor.total, request.kv_type, request.parallel
    )
    try:
        plan = plan_for(settings, shape, device, residents)
    except DoesNotFit as exc:
        memory.plan_error = exc.message
        return memory
    notes = list(plan.notes)
    memory.plan = PlanFacts(plan.n_ctx, plan.parallel, plan.kv_type, plan.estimate.total, notes)
    return memory


def residents_for(device: Any, model: str, loaded: list[dict[str, Any]]) -> tuple[Any, list]:
    """The device as it would be with `model` unloaded (what it holds outside the page cache
    counts as available again), and the other loaded models as the planner's residents, aged
    in `/api/ps` order (it does not say when each was last used); busy ones are not idle."""
    from agentport.planner.plan import Resident

    mine = [row for row in loaded if _same(model, row)]
    device = replace(device, available=device.available + sum(map(_held, mine)))
    residents = [
        Resident(
            name=str(row.get("name")),
            weights=_memory(row, "weights"),
            total=_memory(row, "total"),
            busy=bool(_get(row.get("slots"), "busy")),
            last_used=float(order),
        )
        for order, row in enumerate(loaded)
        if not _same(model, row)
    ]
    return device, residents


def _held(row: dict[str, Any]) -> int:
    """Bytes a loaded model holds outside the page cache: its KV cache and compute buffer."""
    return max(0, _memory(row, "total") - _memory(row, "weights"))


def _local_gguf(settings: Settings, model: str) -> Path | None:
    from agentport.store.embedded import register_embedded
    from agentport.store.models import ModelStore

    store = ModelStore(settings.models_dir)
    try:
        register_embedded(store)
        return store.get(model).model_path
    except (AgentportError, OSError):
        return None


def _same(model: str, entry: dict[str, Any]) -> bool:
    names = {str(entry.get(key)) for key in ("name", "model") if entry.get(key)}
    return any(_display(model) == _display(name) for name in names)


def _display(name: str) -> str:
    try:
        return parse_name(name).display
    except InvalidRequestError:
        return name


def _models(data: Any) -> list[dict[str, Any]]:
    models = _get(data, "models")
    return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []


def _get(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else None


def _memory(row: dict[str, Any], part: str) -> int:
    """Bytes of one part ("weights", "total") a loaded model holds, by what llama.cpp reported,
    else by its plan; `size` for the total when neither is given."""
    memory = row.get("memory") if isinstance(row.get("memory"), dict) else {}
    for source in ("actual", "planned"):
        value = _get(memory.get(source), part)
        if isinstance(value, int) and value:
            return value
    size = row.get("size")
    return size if part == "total" and isinstance(size, int) else 0


# --- output ----------------------------------------------------------------------------------

STYLES = {OK: "green", WARN: "yellow", FAIL: "bold red"}


def checks_table(checks: list[Check]) -> Table:
    """STATUS, CHECK, FINDING, FIX: one row per check."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in ("STATUS", "CHECK", "FINDING", "FIX"):
        table.add_column(column, no_wrap=column in ("STATUS", "CHECK"))
    for check in checks:
        status = Text(check.status, style=STYLES.get(check.status, ""))
        table.add_row(status, Text(check.name), Text(check.finding), Text(check.fix or "-"))
    return table


def report(facts: Facts, checks: list[Check]) -> dict[str, Any]:
    """The `--json` document."""
    return {
        "model": facts.model,
        "server": facts.base_url,
        "ok": exit_code(checks) == 0,
        "checks": [asdict(check) for check in checks],
    }


def doctor_command(model: str | None = None, as_json: bool = False) -> None:
    """The body of `agentport doctor`: gather, check, print; exit code 1 on any fail."""
    settings = load_settings()
    facts = gather(settings, model or settings.default_model)
    checks = run_checks(facts)
    if as_json:
        typer.echo(json.dumps(report(facts, checks), indent=2))
    else:
        console.print(f"agentport doctor: {facts.model} at {facts.base_url}", markup=False)
        console.print(checks_table(checks))
    raise typer.Exit(code=exit_code(checks))
