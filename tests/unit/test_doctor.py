"""`agentport doctor`: every check fed with fake facts, the smaller-model fix, the glue to the
planner (the real one, on the embedded model's GGUF), and the command's exit code and JSON."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentport.cli import doctor
from agentport.cli.doctor import (
    FAIL,
    KV_FIX,
    OK,
    SERVE_FIX,
    TOOLS_FIX,
    WARN,
    DeviceFacts,
    Facts,
    MemoryFacts,
    PlanFacts,
)
from agentport.cli.main import app
from agentport.config import Settings
from agentport.planner import probes
from agentport.planner.budget import headroom
from agentport.planner.estimate import estimate_memory
from agentport.planner.gguf_meta import ModelShape, read_shape
from agentport.planner.probes import DeviceMemory

GB = 1024**3
runner = CliRunner()


def healthy(**changes) -> Facts:
    """Facts of a machine where everything is fine; tests change one thing."""
    facts = Facts(
        model="qwen2.5-coder:14b",
        base_url="http://127.0.0.1:11434",
        server_version="0.1.0",
        listed=True,
        in_store=True,
        capabilities=["completion", "tools"],
        template="{% if tools %}{{ tools | tojson }}{% endif %}",
        device=DeviceFacts(total=16 * GB, available=12 * GB, swap_used=0),
        memory=MemoryFacts(
            budget=9 * GB,
            reserve=4 * GB,
            floor=32768,
            floor_total=8 * GB,
            plan=PlanFacts(n_ctx=32768, parallel=1, kv_type="f16", total=8 * GB),
        ),
        disk_path="/models",
        disk_free=100 * 1000**3,
    )
    return replace(facts, **changes)


def memory(**changes) -> MemoryFacts:
    return replace(healthy().memory, **changes)


def plan(**changes) -> PlanFacts:
    return replace(healthy().memory.plan, **changes)


def by_name(facts: Facts) -> dict[str, doctor.Check]:
    return {check.name: check for check in doctor.run_checks(facts)}


def test_a_healthy_machine_passes_every_check() -> None:
    checks = doctor.run_checks(healthy())
    assert [c.name for c in checks] == [
        "server",
        "model",
        "context",
        "tools",
        "memory",
        "swap",
        "pressure",
        "disk",
    ]
    assert all(c.status == OK for c in checks), checks
    assert all(c.fix == "" for c in checks)
    assert doctor.exit_code(checks) == 0


# --- one check at a time ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "status", "fix"),
    [
        ({}, OK, ""),
        ({"server_version": None}, FAIL, SERVE_FIX),
        ({"server_version": None, "server_error": "the server answered 500"}, FAIL, SERVE_FIX),
    ],
)
def test_server(changes: dict, status: str, fix: str) -> None:
    check = doctor.check_server(healthy(**changes))
    assert (check.status, check.fix) == (status, fix)
    if "server_error" in changes:
        assert "the server answered 500" in check.finding


@pytest.mark.parametrize(
    ("changes", "status", "fix"),
    [
        ({}, OK, ""),
        ({"listed": False}, FAIL, "agentport pull qwen2.5-coder:14b"),
        ({"listed": None, "server_version": None}, OK, ""),  # found in the local store
        ({"listed": None, "in_store": False}, FAIL, "agentport pull qwen2.5-coder:14b"),
        ({"listed": None, "in_store": None}, WARN, "agentport pull qwen2.5-coder:14b"),
    ],
)
def test_model(changes: dict, status: str, fix: str) -> None:
    check = doctor.check_model(healthy(**changes))
    assert (check.status, check.fix) == (status, fix)


@pytest.mark.parametrize(
    ("changes", "status", "fix", "shown"),
    [
        ({}, OK, "", "32768 tokens (planned"),
        ({"loaded_context": 65536}, OK, "", "65536 tokens (loaded)"),
        ({"memory": memory(plan=plan(n_ctx=24576))}, WARN, KV_FIX, "24576"),
        ({"memory": memory(plan=plan(n_ctx=16384))}, FAIL, KV_FIX, "16384"),
        (
            {"context_setting": 8192, "memory": memory(plan=plan(n_ctx=8192))},
            FAIL,
            "set AGENTPORT_CONTEXT_LENGTH=32768",
            "8192",
        ),
        (
            {"loaded_context": 8192},
            FAIL,
            "restart `agentport serve` with AGENTPORT_CONTEXT_LENGTH=32768",
            "8192 tokens (loaded)",
        ),
        (
            {"memory": memory(plan=plan(n_ctx=24576, kv_type="q8_0"))},
            WARN,
            "use qwen2.5-coder:7b instead of :14b on 16 GB",
            "24576",
        ),
    ],
)
def test_context(changes: dict, status: str, fix: str, shown: str) -> None:
    check = doctor.check_context(healthy(**changes))
    assert (check.status, check.fix) == (status, fix)
    assert shown in check.finding


def test_context_fails_when_nothing_fits() -> None:
    facts = healthy(memory=memory(plan=None, plan_error="needs 9.5 GB for weights alone"))
    check = doctor.check_context(facts)
    assert check.status == FAIL and "needs 9.5 GB for weights alone" in check.finding


def test_context_unknown_without_a_local_model() -> None:
    facts = healthy(
        memory=None, memory_error="m:1 is not in the local store", model="m:1", in_store=False
    )
    check = doctor.check_context(facts)
    assert check.status == WARN and "not in the local store" in check.finding
    assert check.fix == "agentport pull m:1"


def test_context_unknown_when_the_planner_failed() -> None:
    facts = healthy(memory=None, memory_error="the memory plan failed: boom")
    check = doctor.check_context(facts)
    assert check.status == WARN and "boom" in check.finding
    assert check.fix == "run `agentport fit qwen2.5-coder:14b` to see the memory plan"


@pytest.mark.parametrize(
    ("capabilities", "template", "takes"),
    [
        (["completion", "tools"], "{% for tool in tools %}{% endfor %}", True),
        (["completion", "tools"], "{{ messages }}", False),  # the server's fallback, not native
        (["completion"], "{% for tool in tools %}{% endfor %}", False),
        (["completion", "tools"], None, True),
        (None, "{{ tools }}", True),
    ],
)
def test_takes_tools(capabilities: list[str] | None, template: str | None, takes: bool) -> None:
    assert doctor.takes_tools(capabilities, template) is takes


@pytest.mark.parametrize(
    ("changes", "status", "fix"),
    [
        ({}, OK, ""),
        ({"template": "<|im_start|>{{ message['content'] }}"}, WARN, TOOLS_FIX),
        ({"capabilities": None, "template": None, "server_version": None}, WARN, SERVE_FIX),
        (
            {"capabilities": None, "template": None, "listed": False},
            WARN,
            "agentport pull qwen2.5-coder:14b",
        ),
        (
            {"capabilities": None, "template": None, "show_error": "does not fit"},
            WARN,
            "run `agentport show qwen2.5-coder:14b` to see why",
        ),
    ],
)
def test_tools(changes: dict, status: str, fix: str) -> None:
    check = doctor.check_tools(healthy(**changes))
    assert (check.status, check.fix) == (status, fix)


@pytest.mark.parametrize(
    ("changes", "status", "fix"),
    [
        ({}, OK, ""),
        (  # the guard refuses: a smaller size of the same family is named
            {"memory": memory(floor_total=12 * GB, plan=None, plan_error="too big")},
            FAIL,
            "use qwen2.5-coder:7b instead of :14b on 16 GB",
        ),
        (  # f16 at the floor does not fit, the plan switched to q8_0 itself
            {"memory": memory(floor_total=10 * GB, plan=plan(kv_type="q8_0"))},
            WARN,
            "set a q8_0 KV cache (AGENTPORT_KV_TYPE=q8_0)",
        ),
        (  # four slots asked for, only one fits
            {"memory": memory(floor_total=10 * GB, parallel=4, plan=plan(parallel=1))},
            WARN,
            "set AGENTPORT_PARALLEL=1",
        ),
        (  # fits only below the agent floor
            {"memory": memory(floor_total=10 * GB, plan=plan(n_ctx=16384, kv_type="q8_0"))},
            WARN,
            "use qwen2.5-coder:7b instead of :14b on 16 GB",
        ),
        (
            {"memory": None, "memory_error": "x is not in the local store", "in_store": False},
            WARN,
            "agentport pull qwen2.5-coder:14b",
        ),
    ],
)
def test_memory(changes: dict, status: str, fix: str) -> None:
    check = doctor.check_memory(healthy(**changes))
    assert (check.status, check.fix) == (status, fix)


def test_memory_finding_names_the_numbers() -> None:
    finding = doctor.check_memory(healthy()).finding
    assert "8.6 GB at 32768 tokens (f16 KV)" in finding
    assert "budget 9.7 GB after 4.3 GB kept" in finding


def test_memory_fix_for_an_unknown_family_is_generic() -> None:
    facts = healthy(model="mystery:14b", memory=memory(plan=None, plan_error="too big"))
    assert doctor.check_memory(facts).fix == doctor.GENERIC_MODEL_FIX


@pytest.mark.parametrize(
    ("swap_used", "status"), [(0, OK), (100 * 1024**2, OK), (300 * 1024**2, WARN)]
)
def test_swap(swap_used: int, status: str) -> None:
    device = DeviceFacts(total=16 * GB, available=8 * GB, swap_used=swap_used)
    check = doctor.check_swap(healthy(device=device))
    assert check.status == status
    assert bool(check.fix) is (status != OK)


@pytest.mark.parametrize(("pressure", "status"), [("ok", OK), ("warn", WARN), ("critical", FAIL)])
def test_pressure(pressure: str, status: str) -> None:
    device = DeviceFacts(16 * GB, 1 * GB, pressure=pressure, pressure_detail="PSI some avg10=42")
    check = doctor.check_pressure(healthy(device=device))
    assert check.status == status and "PSI some avg10=42" in check.finding


def test_device_checks_without_probes_warn() -> None:
    facts = healthy(device=None, memory=None, memory_error="the memory probes failed: boom")
    checks = by_name(facts)
    for name in ("swap", "pressure", "memory"):
        assert checks[name].status == WARN and "boom" in checks[name].finding


@pytest.mark.parametrize(
    ("free", "status"),
    [(100 * 1000**3, OK), (9 * 1000**3, WARN), (1 * 1000**3, FAIL), (None, WARN)],
)
def test_disk(free: int | None, status: str) -> None:
    check = doctor.check_disk(healthy(disk_free=free))
    assert check.status == status
    assert ("AGENTPORT_MODELS" in check.fix) is (status != OK)


@pytest.mark.parametrize(
    ("model", "scale", "expected"),
    [
        ("qwen2.5-coder:14b", 0.6, ("qwen2.5-coder:7b", "14b")),
        ("qwen2.5-coder:14b", 0.11, ("qwen2.5-coder:1.5b", "14b")),
        ("qwen2.5-coder:14b-instruct-q4_K_M", 0.6, ("qwen2.5-coder:7b", "14b-instruct-q4_k_m")),
        ("qwen3:8b", 0.6, ("qwen3:4b", "8b")),
        ("llama3.1:8b", 0.5, None),  # no smaller llama3.1
        ("qwen2.5-coder:0.5b", 0.5, None),
        ("mystery:14b", 0.5, None),
        ("qwen2.5-coder:latest", 0.5, None),
        ("not a name!", 0.5, None),
    ],
)
def test_smaller_model(model: str, scale: float, expected: tuple[str, str] | None) -> None:
    assert doctor.smaller_model(model, scale) == expected


def test_exit_code_and_report() -> None:
    facts = healthy(server_version=None)
    checks = doctor.run_checks(facts)
    assert doctor.exit_code(checks) == 1
    data = doctor.report(facts, checks)
    assert data["ok"] is False and data["model"] == "qwen2.5-coder:14b"
    assert data["checks"][0] == {
        "name": "server",
        "status": FAIL,
        "finding": "no server answers at http://127.0.0.1:11434",
        "fix": SERVE_FIX,
    }


# --- the glue to the planner: the real planner on the embedded model's real GGUF -------------


def machine(total: int = 16 * GB, available: int = 10 * GB) -> DeviceMemory:
    return DeviceMemory(total=total, available=available)


@pytest.fixture(scope="module")
def smollm2(gguf: Path) -> ModelShape:
    return read_shape(gguf)


def test_plan_memory_budgets_like_the_server(gguf: Path, smollm2: ModelShape) -> None:
    loaded = [
        {"name": "smollm2:135m", "memory": {"planned": {"weights": 1 * GB, "total": 2 * GB}}},
        {
            "name": "qwen3:8b",
            "memory": {
                "planned": {"weights": 4 * GB},
                "actual": {"weights": 5 * GB, "total": 6 * GB},
            },
            "slots": {"total": 1, "busy": 0},
        },
        {"name": "busy:1b", "size": 3 * GB, "slots": {"total": 1, "busy": 1}},
    ]
    settings = Settings(memory_reserve=4 * GB)
    result = doctor.plan_memory(settings, machine(), gguf, "smollm2:135m", loaded)
    assert result.reserve == 4 * GB
    # total 16 - reserve 4 - what the others hold beyond weights (1 + 3), binding before
    # available 10 + 1 (the checked model's own KV cache and compute buffer); then the others'
    # weights come off: their page cache counts as available
    assert result.budget == 16 * GB - 4 * GB - 4 * GB - 5 * GB
    # 4 slots of 32k need about 3.1 GiB with SmolLM2: the guard evicts the idle qwen3:8b (the
    # busy model stays) and plans the full configuration
    assert result.plan is not None
    assert (result.plan.n_ctx, result.plan.parallel, result.plan.kv_type) == (32768, 4, "f16")
    assert result.plan.total > result.budget and result.plan.notes == []
    full = estimate_memory(smollm2, 32768, parallel=4, kv_type="f16")
    assert result.plan.total == full.total
    assert result.floor_total == estimate_memory(smollm2, 32768, parallel=1).total
    assert (result.kv_type, result.parallel) == (None, None)


def test_a_busy_model_is_never_evicted(gguf: Path) -> None:
    loaded = [{"name": "busy:8b", "size": 14 * GB, "slots": {"total": 1, "busy": 1}}]
    result = doctor.plan_memory(Settings(), machine(), gguf, "smollm2:135m", loaded)
    assert result.budget == 0 and result.plan is None
    assert "does not fit" in result.plan_error


def test_a_loaded_model_gives_back_what_it_holds(gguf: Path) -> None:
    device = machine(total=64 * GB, available=10 * GB)
    loaded = [{"name": "m:1", "memory": {"actual": {"weights": 1 * GB, "total": 3 * GB}}}]
    result = doctor.plan_memory(Settings(), device, gguf, "m:1", loaded)
    assert result.budget == 12 * GB - headroom(64 * GB)  # available binds; the KV cache is its own
    assert result.plan is not None and result.plan.notes == []


def test_plan_memory_uses_the_settings(
    gguf: Path, smollm2: ModelShape, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTPORT_KV_TYPE", "q8_0")
    monkeypatch.setenv("AGENTPORT_PARALLEL", "2")
    monkeypatch.setenv("AGENTPORT_MEMORY_RESERVE", "2GB")
    monkeypatch.setenv("AGENTPORT_CONTEXT_LENGTH", "16384")
    result = doctor.plan_memory(Settings(), machine(), gguf, "m:1", [])
    assert result.plan is not None
    assert (result.plan.n_ctx, result.plan.parallel, result.plan.kv_type) == (16384, 2, "q8_0")
    assert result.reserve == 2 * GB
    assert result.budget == 10 * GB - headroom(16 * GB)
    floor = estimate_memory(smollm2, 32768, parallel=2, kv_type="q8_0")
    assert result.floor_total == floor.total
    assert (result.kv_type, result.parallel) == ("q8_0", 2)


def test_plan_memory_adapts_like_the_server(gguf: Path) -> None:
    """A budget too small for 4 slots of 32k: the guard's adaptations reach the doctor."""
    result = doctor.plan_memory(Settings(), machine(available=1 * GB), gguf, "m:1", [])
    assert result.plan is not None and result.plan.parallel < 4
    assert result.plan.total <= result.budget
    assert any("do not fit" in note for note in result.plan.notes)


def test_plan_memory_records_the_refusal(gguf: Path) -> None:
    result = doctor.plan_memory(Settings(), machine(available=100 << 20), gguf, "m:1", [])
    assert result.plan is None and "does not fit" in result.plan_error


def test_gather_without_a_server_still_checks_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPORT_HOST", f"127.0.0.1:{free_port()}")
    monkeypatch.setattr(probes, "probe_device", lambda: machine())
    facts = doctor.gather(Settings(), "smollm2:135m")
    assert facts.server_version is None and facts.listed is None
    assert facts.device is not None and facts.disk_free is not None
    checks = by_name(facts)
    assert checks["server"].status == FAIL
    assert checks["disk"].status in (OK, WARN, FAIL) and checks["disk"].finding
    assert facts.in_store  # the embedded model
    assert checks["model"].status == OK and checks["memory"].status == OK


def test_gather_reports_a_failing_planner(monkeypatch: pytest.MonkeyPatch) -> None:
    def probe_device():
        raise RuntimeError("no /proc")

    monkeypatch.setattr(probes, "probe_device", probe_device)
    monkeypatch.setenv("AGENTPORT_HOST", f"127.0.0.1:{free_port()}")
    facts = doctor.gather(Settings(), "smollm2:135m")
    assert facts.device is None and "no /proc" in facts.memory_error
    assert by_name(facts)["pressure"].status == WARN


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the command -----------------------------------------------------------------------------


@pytest.mark.parametrize(("facts", "code"), [(healthy(), 0), (healthy(listed=False), 1)])
def test_command_exit_code_and_json(
    monkeypatch: pytest.MonkeyPatch, facts: Facts, code: int
) -> None:
    asked: list[str] = []
    monkeypatch.setattr(doctor, "gather", lambda settings, model: asked.append(model) or facts)
    result = runner.invoke(app, ["doctor", "--json", "--model", "qwen2.5-coder:14b"])
    assert result.exit_code == code, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is (code == 0) and len(data["checks"]) == 8
    assert asked == ["qwen2.5-coder:14b"]


def test_command_table_uses_the_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPORT_DEFAULT_MODEL", "qwen3:8b")
    asked: list[str] = []
    monkeypatch.setattr(doctor, "gather", lambda s, model: asked.append(model) or healthy())
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert asked == ["qwen3:8b"]
    for word in ("STATUS", "CHECK", "FINDING", "FIX", "server", "disk"):
        assert word in result.stdout
