"""Settings: every knob of agentport, read from AGENTPORT_* environment variables.

Each field has a description; `agentport config` prints them all with their values and where each
value came from. Nothing else in agentport reads `os.environ`: code that needs a process
environment (the launcher of Claude Code) asks this module for it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agentport.errors import InvalidRequestError

ENV_PREFIX = "AGENTPORT_"
DEFAULT_PORT = 11434


def _default_home() -> Path:
    return Path.home() / ".agentport"


class Settings(BaseSettings):
    """Every setting of agentport. Environment variable: AGENTPORT_<FIELD NAME IN CAPITALS>."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    host: str = Field(
        f"127.0.0.1:{DEFAULT_PORT}",
        description="Address to bind (and for clients, to reach): host, host:port or :port.",
    )
    home: Path = Field(
        default_factory=_default_home, description="Directory for agentport's own state."
    )
    models: Path | None = Field(
        None, description="Directory of the model store (default: <home>/models)."
    )
    default_model: str = Field(
        "smollm2:135m", description="Model used when a client asks for a claude-* name."
    )
    context_length: int = Field(
        32768,
        ge=512,
        description="Context window per model, in tokens; capped by the memory available. "
        "Models trained on less are extended with YaRN rope scaling.",
    )
    threads: int = Field(
        0, ge=0, description="CPU threads for the engine (0: one per physical core)."
    )
    batch_size: int = Field(512, ge=16, description="Prompt tokens evaluated per engine step.")
    flash_attention: bool = Field(True, description="Use flash attention in the engine.")
    engine: str = Field(
        "llamacpp",
        pattern="^(llamacpp|mlx)$",
        description="Engine that runs the models: llamacpp, or mlx (one request at a time, "
        "llama-family GGUF files with Q4_0/Q4_1/Q8_0/F16 tensors; needs the mlx extra).",
    )
    keep_alive: str = Field(
        "30m",
        description="How long an idle model stays loaded: a duration (30s, 5m, 1h), seconds, "
        "0 to unload after each request, or a negative number to keep it forever.",
    )
    aliases: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Model name aliases as name=target pairs, comma separated (or JSON). "
        "Names starting with claude- map to the default model unless aliased.",
    )
    api_key: str | None = Field(
        None, description="If set, every request must carry it (Bearer or x-api-key)."
    )
    insecure: bool = Field(
        False,
        description="Serve on a non-loopback address without an API key (refused otherwise); "
        "every start then logs a warning.",
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra browser origins allowed besides loopback ones, comma separated.",
    )
    parallel: int = Field(
        0,
        ge=0,
        le=64,
        description="Sequences each model serves at once, each with the full context "
        "(0: chosen by the memory plan, up to 4).",
    )
    kv_type: str = Field(
        "auto",
        pattern="^(auto|f16|q8_0|q4_0)$",
        description="KV cache type: f16, q8_0, q4_0, or auto (f16, q8_0 when memory is short).",
    )
    memory_reserve: int = Field(
        0,
        ge=0,
        description="Memory kept free for the rest of the machine (IDE, browser, OS), in bytes "
        "or with a unit (8GB, 512MB); 0: a default that grows with total memory.",
    )
    prefix_cache_disk: int = Field(
        8 << 30,
        ge=0,
        description="Disk space for saved prompt prefixes (KV state) that survive a restart, "
        "in bytes or with a unit (8GB); 0 turns the disk tier off.",
    )
    prefix_cache_min_tokens: int = Field(
        1024, ge=64, description="Reused prompt prefixes at least this long are saved to disk."
    )
    default_max_tokens: int = Field(
        4096,
        ge=0,
        description="Output tokens of an answer whose request sets no limit (OpenAI, Ollama and "
        "Responses clients may omit it); 0 lets such answers run to the end of the context.",
    )
    max_queue: int = Field(
        4,
        ge=0,
        description="Requests that may wait per model while all its sequences are busy; "
        "beyond that, Anthropic answers 529 and OpenAI / Ollama 503, with Retry-After.",
    )
    max_body_bytes: int = Field(
        64 * 1024 * 1024, description="Largest request body accepted, in bytes (else 413)."
    )
    ping_interval: float = Field(
        3.0, gt=0, description="Seconds between keep-alive pings while a prompt is prefilled."
    )
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    registry: str = Field(
        "https://registry.ollama.ai",
        description="Base URL of the model registry for names without a host (Ollama's protocol).",
    )
    hf_endpoint: str = Field(
        "https://huggingface.co", description="Hugging Face endpoint for hf.co/... model names."
    )
    download_parallel: int = Field(
        4, ge=1, le=16, description="Blobs downloaded at once during a pull."
    )
    disk_margin: int = Field(
        512 << 20,
        ge=0,
        description="Free disk space a pull or a blob upload must leave beyond the size it "
        "announces, in bytes or with a unit (1GB); else it is refused before writing.",
    )
    import_dir: Path | None = Field(
        None,
        description="Directory whose files /api/create's FROM may name by path; unset, FROM "
        "takes only uploaded blobs and model names (the CLI uploads the file it is given).",
    )

    @field_validator("aliases", mode="before")
    @classmethod
    def _parse_aliases(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = value.strip()
        if value.startswith("{"):
            import json

            return json.loads(value)
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        return {k.strip(): v.strip() for k, v in pairs}

    @field_validator("memory_reserve", "prefix_cache_disk", "disk_margin", mode="before")
    @classmethod
    def _parse_reserve(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def models_dir(self) -> Path:
        return self.models or self.home / "models"

    @property
    def prefix_cache_dir(self) -> Path:
        """Where the disk tier of the prefix cache keeps its entries."""
        return self.home / "cache" / "prefixes"

    @property
    def metadata_cache(self) -> Path:
        """Where parsed GGUF headers are remembered."""
        return self.home / "cache" / "gguf"

    @property
    def bind(self) -> tuple[str, int]:
        """(host, port) from `host`, accepting Ollama's forms: host, host:port, :port, a URL."""
        return parse_host(self.host)

    @property
    def base_url(self) -> str:
        host, port = self.bind
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"


SIZE_PATTERN = re.compile(r"^([0-9]*\.?[0-9]+)\s*([kmgt]?)(?:i?b)?$")
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: str) -> int:
    """Bytes from "16GB", "512 MiB", "8g" or "1234" (binary units)."""
    match = SIZE_PATTERN.match(value.strip().lower())
    if match is None:
        raise ValueError(f"not a size: {value!r} (try 8GB or 512MB)")
    number, unit = match.groups()
    return int(float(number) * SIZE_UNITS[unit])


def parse_host(value: str) -> tuple[str, int]:
    value = value.strip()
    for scheme in ("http://", "https://"):
        if value.startswith(scheme):
            value = value[len(scheme) :]
    value = value.rstrip("/")
    if value.startswith("["):  # [::1]:port
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else DEFAULT_PORT
    if value.count(":") == 1:
        host, port = value.split(":")
        return host or "127.0.0.1", int(port) if port else DEFAULT_PORT
    if value.isdigit():
        return "127.0.0.1", int(value)
    return value or "127.0.0.1", DEFAULT_PORT


def check_exposure(settings: Settings) -> str | None:
    """Refuse to serve a non-loopback address without an API key unless `insecure` is set
    (`InvalidRequestError`); returns the warning to log at start when it is, else None."""
    host, port = settings.bind
    if is_loopback_host(host) or settings.api_key:
        return None
    if not settings.insecure:
        raise InvalidRequestError(
            f"refusing to serve {host or '0.0.0.0'}:{port}, which other machines can reach, "
            f"without an API key: set {env_name('api_key')}, or pass --insecure "
            f"({env_name('insecure')}=1) to serve it open to anyone on the network",
            "host",
        )
    return (
        f"serving {host or '0.0.0.0'}:{port} without an API key (--insecure): anyone who can "
        "reach this address can use the models and the model store"
    )


def is_loopback_host(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine (a name other than localhost
    may resolve anywhere, so it counts as exposed)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Create `path` and each missing folder above it readable by their owner only (what lies
    under the home directory: the store, the prefix cache, logs); existing folders keep their
    mode."""
    missing = []
    while not path.is_dir() and path.parent != path:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)


def private_opener(path: str | os.PathLike[str], flags: int) -> int:
    """An `opener` for `open()` that creates files readable by their owner only."""
    return os.open(path, flags, PRIVATE_FILE_MODE)


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def describe(settings: Settings) -> list[tuple[str, str, str, str]]:
    """(environment variable, value, source, description) for every setting."""
    rows = []
    for name, info in Settings.model_fields.items():
        var = env_name(name)
        value = getattr(settings, name)
        if name == "api_key" and value:
            value = "(set)"
        if var in os.environ:
            source = "environment"
        elif name in settings.model_fields_set:
            source = "command line"
        else:
            source = "default"
        rows.append((var, _show(value), source, info.description or ""))
    return rows


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "(none)"
    if isinstance(value, list):
        return ",".join(value) or "(none)"
    return "(unset)" if value is None else str(value)


def process_environment() -> dict[str, str]:
    """A copy of the process environment, for launching a child program (e.g. `claude`)."""
    return dict(os.environ)
