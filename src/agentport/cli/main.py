"""The typer app `app` behind the `agentport` command, and its commands.

`serve` runs the server in this process; every other command is a client of the server's HTTP API
at `Settings().base_url`, except `config` and `launch claude --print-env`, which need no server.
Commands stay thin: the work lives in `chat.py`, `tables.py` and `agentport.launch`.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from agentport import __version__
from agentport.cli import models as model_commands
from agentport.cli.bench import bench_app
from agentport.cli.chat import ChatOptions, chat, run_once
from agentport.cli.client import Client
from agentport.cli.console import console, err_console, load_settings, reporting
from agentport.cli.pull import pull_command
from agentport.cli.tables import models_table, running_table, settings_table
from agentport.config import Settings, check_exposure, describe
from agentport.errors import AgentportError
from agentport.launch import claude as claude_launcher

app = typer.Typer(
    name="agentport",
    help="A local model runtime for coding agents: Anthropic, OpenAI and Ollama APIs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
launch_app = typer.Typer(help="Run a coding agent against the agentport server.")
app.add_typer(launch_app, name="launch", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def field_help(name: str) -> str:
    """The help text of a command-line option: the description of its Settings field."""
    return Settings.model_fields[name].description or ""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help=field_help("host"))] = None,
    model: Annotated[str | None, typer.Option(help=field_help("default_model"))] = None,
    ctx: Annotated[int | None, typer.Option(help=field_help("context_length"))] = None,
    threads: Annotated[int | None, typer.Option(help=field_help("threads"))] = None,
    engine: Annotated[str | None, typer.Option(help=field_help("engine"))] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help=field_help("insecure"))] = False,
) -> None:
    """Start the server (Anthropic, OpenAI and Ollama APIs) in the foreground."""
    given = {
        "host": host,
        "default_model": model,
        "context_length": ctx,
        "threads": threads,
        "engine": engine,
        "insecure": insecure or None,
    }
    settings = load_settings(**{k: v for k, v in given.items() if v is not None})
    with reporting():
        check_exposure(settings)  # refused here, before anything starts; the server warns
    from agentport.server.app import run_server

    run_server(settings)


@app.command()
def run(
    model: Annotated[str, typer.Argument(help="The model to talk to.")],
    prompt: Annotated[
        str | None,
        typer.Argument(help="A prompt to answer once ('-' reads it from stdin); none: a chat."),
    ] = None,
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens in an answer.")] = 2048,
) -> None:
    """Answer PROMPT with MODEL, or chat with it (/bye or Ctrl-D ends the chat)."""
    options = ChatOptions(system=system, temperature=temperature, max_tokens=max_tokens)
    with reporting(), Client(load_settings()) as client:
        if prompt is None:
            client.check()
            chat(client, model, options, console)
        else:
            text = sys.stdin.read() if prompt == "-" else prompt
            run_once(client, model, text, options, console)


@app.command("list")
def list_models() -> None:
    """List the models in the store."""
    with reporting(), Client(load_settings()) as client:
        data = client.get_json("/api/tags")
    console.print(models_table(_models(data)))


app.command("ls", hidden=True)(list_models)
app.command("pull")(pull_command)
app.command("create")(model_commands.create_command)
app.command("show")(model_commands.show_command)
app.command("cp")(model_commands.cp_command)
app.command("rm")(model_commands.rm_command)
app.command("stop")(model_commands.stop_command)


@app.command()
def ps() -> None:
    """List the models loaded in memory."""
    with reporting(), Client(load_settings()) as client:
        data = client.get_json("/api/ps")
    console.print(running_table(_models(data)))


def _models(data: Any) -> list[dict[str, Any]]:
    models = data.get("models") if isinstance(data, dict) else None
    return [model for model in models or [] if isinstance(model, dict)]


@app.command()
def config() -> None:
    """Show every setting: its environment variable, value, source and meaning."""
    console.print(settings_table(describe(load_settings())))


@app.command()
def doctor(
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="The agent's model (default: AGENTPORT_DEFAULT_MODEL)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check the server, model, context, tools, memory, swap and disk for a coding agent."""
    from agentport.cli.doctor import doctor_command

    doctor_command(model, as_json)


@app.command()
def fit(
    model: Annotated[
        str | None, typer.Argument(help="A model in the local store, or a .gguf file.")
    ] = None,
    ctx: Annotated[int | None, typer.Option(help=field_help("context_length"))] = None,
    parallel: Annotated[int | None, typer.Option(help=field_help("parallel"))] = None,
    kv_type: Annotated[str | None, typer.Option(help=field_help("kv_type"))] = None,
    ram: Annotated[
        str | None, typer.Option(help="Plan for a machine with this much memory (16GB).")
    ] = None,
    tiers: Annotated[
        bool, typer.Option("--tiers", help="Which agent models fit 16, 24 and 48 GB machines.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Show whether MODEL fits this machine's memory (or --ram), and how (no server needed)."""
    from agentport.cli.fit import FitOptions, fit_command

    fit_command(FitOptions(model, ctx, parallel, kv_type, ram, tiers, as_json))


@app.command()
def version() -> None:
    """Show the version of agentport, and of the server if one answers."""
    console.print(f"agentport {__version__}", markup=False)
    settings = load_settings()
    server_version = fetch_server_version(settings)
    if server_version:
        console.print(f"server {server_version} at {settings.base_url}", markup=False)


def fetch_server_version(settings: Settings) -> str | None:
    """The version the server reports at `GET /api/version`, or None if none answers."""
    try:
        with Client(settings, timeout=1.0) as client:
            data = client.get_json("/api/version")
    except AgentportError:
        return None
    return str(data.get("version")) if isinstance(data, dict) and data.get("version") else None


@launch_app.command("claude")
def launch_claude(
    args: Annotated[
        list[str] | None, typer.Argument(help="Arguments for claude, after '--'.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model for every Claude Code role (default: default model).")
    ] = None,
    print_env: Annotated[
        bool, typer.Option("--print-env", help="Print the variables as export lines and exit.")
    ] = False,
) -> None:
    """Run Claude Code on a local model, starting the server if none answers."""
    settings = load_settings()
    if print_env:
        env = claude_launcher.claude_environment(settings, model)
        for line in claude_launcher.export_lines(env):
            typer.echo(line)
        return
    with reporting():
        claude_launcher.launch_claude(settings, model, args, notify=_notify)


def _notify(message: str) -> None:
    err_console.print(message, style="dim", markup=False, soft_wrap=True)


if __name__ == "__main__":
    app()
