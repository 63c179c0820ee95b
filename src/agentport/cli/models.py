"""The model commands `create`, `show`, `cp` and `rm`: clients of `/api/create`, `/api/show`,
`/api/copy` and `/api/delete`.

`create` parses the Modelfile here, so its errors name their line before anything is sent,
resolves a relative FROM path against the Modelfile's folder, and uploads that file as a blob
(`HEAD` then `POST /api/blobs/<digest>`, skipped when the server has it): the server reads no
path a client names, and the Modelfile it gets says `FROM @sha256:<digest>`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from agentport.cli.client import Client, message_in
from agentport.cli.console import console, err_console, load_settings, reporting
from agentport.config import Settings
from agentport.errors import AgentportError, ApiError, InvalidRequestError
from agentport.store.modelfile import Modelfile, gguf_path, parse_modelfile, to_modelfile
from agentport.store.models import file_sha256
from agentport.store.names import parse_name

DEFAULT_MODELFILE = "Modelfile"
SHOWN_LINES = {"Template": 12, "License": 4}  # longer sections are cut, with a note
UPLOAD_TIMEOUT = 600.0  # seconds without progress before an upload of model data gives up


def _settings() -> Settings:
    return load_settings()


# --- create ----------------------------------------------------------------------------------


def create_command(
    name: Annotated[str, typer.Argument(help="Name of the model to create.")],
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="The Modelfile (default: ./Modelfile)."),
    ] = None,
    from_gguf: Annotated[
        Path | None, typer.Option("--from", help="Create the model from this GGUF file.")
    ] = None,
) -> None:
    """Create a model from a Modelfile, or from a GGUF file."""
    with reporting():
        parsed, path = read_modelfile(file, from_gguf)
        with Client(_settings(), timeout=UPLOAD_TIMEOUT) as client:
            if path is not None:
                parsed.source = "@" + upload_gguf(client, path)
            body = {"model": name, "modelfile": to_modelfile(parsed), "stream": True}
            with client.stream("/api/create", body, {}) as lines:
                follow_progress(lines)


def read_modelfile(file: Path | None, from_gguf: Path | None) -> tuple[Modelfile, Path | None]:
    """The Modelfile to send (from `--from`, `-f` or ./Modelfile) and the GGUF file its FROM
    names on this machine, if it names one."""
    if file is not None and from_gguf is not None:
        raise InvalidRequestError("give either --file or --from, not both")
    if from_gguf is not None:
        path = from_gguf.expanduser().absolute()
        if not path.is_file():
            raise InvalidRequestError(f"no such file: {from_gguf}")
        return Modelfile(source=str(path)), path
    file = file or Path(DEFAULT_MODELFILE)
    try:
        parsed = parse_modelfile(file.read_text(encoding="utf-8"))
    except OSError as exc:
        hint = "" if file.exists() else " (give -f Modelfile or --from file.gguf)"
        raise InvalidRequestError(f"cannot read {file}: {exc.strerror}{hint}") from exc
    return parsed, gguf_path(str(parsed.source), file.expanduser().absolute().parent)


def upload_gguf(client: Client, path: Path) -> str:
    """Upload `path` as a blob unless the server has it; returns its digest."""
    err_console.print(f"reading {path.name}", markup=False, highlight=False)
    digest = file_sha256(path)
    if not client.has_blob(digest):
        err_console.print(f"uploading {path.name}", markup=False, highlight=False)
        client.upload_blob(digest, path)
    return digest


def follow_progress(lines: Iterable[str]) -> None:
    """Print the status lines of a create; a byte count shows as a bar; an error line raises."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    with Progress(*columns, TimeRemainingColumn(), console=err_console, transient=True) as bar:
        tasks: dict[str, Any] = {}
        for line in lines:
            event = _decoded(line) if line.strip() else None
            if not isinstance(event, dict):
                continue
            message = message_in(event)
            if message:
                raise ApiError(message)
            status = str(event.get("status", ""))
            if "total" in event:
                if status not in tasks:
                    tasks[status] = bar.add_task(status, total=event.get("total"))
                bar.update(tasks[status], completed=event.get("completed", 0))
            elif status:
                bar.console.print(status, markup=False, highlight=False, soft_wrap=True)


# --- show ------------------------------------------------------------------------------------


def show_command(
    name: Annotated[str, typer.Argument(help="The model to show.")],
    modelfile: Annotated[
        bool, typer.Option("--modelfile", help="Print a Modelfile that recreates the model.")
    ] = False,
) -> None:
    """Show a model's details, parameters, template, system prompt and license."""
    with reporting():
        with Client(_settings(), timeout=120.0) as client:
            data = client.request_json("POST", "/api/show", {"model": name})
        if not isinstance(data, dict):
            raise ApiError(f"the server sent no details for '{name}'")
    if modelfile:
        console.print(str(data.get("modelfile", "")), markup=False, end="", soft_wrap=True)
        return
    console.print(show_text(data), markup=False, soft_wrap=True)


def show_text(data: dict[str, Any]) -> str:
    """`agentport show`'s sections, as Ollama prints them, from an `/api/show` answer."""
    sections = [
        ("Model", _model_rows(data)),
        ("Capabilities", [str(c) for c in data.get("capabilities") or []]),
        ("Parameters", str(data.get("parameters") or "").splitlines()),
        ("System", str(data.get("system") or "").splitlines()),
        ("Template", str(data.get("template") or "").splitlines()),
        ("License", str(data.get("license") or "").splitlines()),
    ]
    out = []
    for title, rows in sections:
        if rows:
            out += [f"  {title}", *(f"    {row}" for row in _cut(title, rows)), ""]
    return "\n".join(out).rstrip("\n")


def _model_rows(data: dict[str, Any]) -> list[str]:
    details = data.get("details") or {}
    info = data.get("model_info") or {}
    arch = str(info.get("general.architecture") or details.get("family") or "")
    loaded = info.get("agentport.context_length")
    scaling = info.get("agentport.rope_scaling")
    rows = [
        ("architecture", arch),
        ("parameters", details.get("parameter_size")),
        ("context length", info.get(f"{arch}.context_length")),
        ("loaded context", f"{loaded} ({scaling})" if loaded and scaling else loaded),
        ("quantization", details.get("quantization_level")),
    ]
    return [f"{label:<20}{value}" for label, value in rows if value]


def _cut(title: str, rows: list[str]) -> list[str]:
    limit = SHOWN_LINES.get(title)
    if limit is None or len(rows) <= limit:
        return rows
    return [*rows[:limit], f"... ({len(rows) - limit} more lines; --modelfile shows all)"]


# --- cp, rm ----------------------------------------------------------------------------------


def cp_command(
    source: Annotated[str, typer.Argument(help="The model to copy.")],
    destination: Annotated[str, typer.Argument(help="The new name.")],
) -> None:
    """Copy a model under a new name (no data is copied)."""
    with reporting(), Client(_settings()) as client:
        body = {"source": source, "destination": destination}
        client.request_json("POST", "/api/copy", body)
    console.print(f"copied '{source}' to '{destination}'", markup=False)


def rm_command(
    names: Annotated[list[str], typer.Argument(help="The models to remove.")],
) -> None:
    """Remove models, and the data no other model uses."""
    with reporting(), Client(_settings()) as client:
        for name in names:
            client.request_json("DELETE", "/api/delete", {"model": name})
            console.print(f"deleted '{name}'", markup=False)


def stop_command(
    name: Annotated[str, typer.Argument(help="The loaded model to unload.")],
) -> None:
    """Unload a model from memory (after the requests it is serving)."""
    with reporting(), Client(_settings()) as client:
        running = client.get_json("/api/ps") or {}
        names = {m.get("name") for m in running.get("models") or [] if isinstance(m, dict)}
        wanted = parse_name(name).display if _parses(name) else name
        if name not in names and wanted not in names:
            err_console.print(f"'{name}' is not loaded (see `agentport ps`)", markup=False)
            raise typer.Exit(1)
        client.request_json("POST", "/api/generate", {"model": name, "keep_alive": 0})
        console.print(f"stopped '{name}'", markup=False)


def _parses(name: str) -> bool:
    try:
        parse_name(name)
    except AgentportError:
        return False
    return True


def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
