'''Modelfiles: `parse_modelfile(text) -> Modelfile` and the reverse, `to_modelfile(parsed)`.

A Modelfile describes a model the way Ollama's does, one instruction a line (instructions are
case-insensitive; `#` starts a comment line):

    FROM ./smollm2.gguf                 a GGUF file (relative to the Modelfile's folder; the CLI
                                        uploads it), an uploaded blob `@sha256:<hex>`, or an
                                        existing model
    PARAMETER temperature 0.2           repeatable; `stop` adds one stop sequence each time
    TEMPLATE """..."""                  the chat template
    SYSTEM "You are terse."             the default system prompt
    MESSAGE user Hello                  example messages (system, user or assistant)
    LICENSE """..."""                   repeatable
    PARSER qwen3_coder                  the tool-call family (one of `chat/families/`)

A value runs to the end of its line, or is quoted as in Ollama: `"..."` or `"""..."""`, either of
which may span lines; a quoted value ends at the first line end where the text read so far
closes its quote. There are no escapes. `ADAPTER` (and Ollama's `DRAFT`, `RENDERER`,
`REQUIRES`) are refused as not supported; an unknown instruction or parameter is refused with
its line number.

Templates: agentport renders prompts with the GGUF's own Jinja chat template. A `TEMPLATE` is
stored and shown as written, and used instead of the GGUF's only when it is a Jinja template;
Ollama's Go templates (`{{ .Prompt }}`) are kept for `show` but never used.
'''

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentport.errors import InvalidRequestError

MAX_MODELFILE_CHARS = 1 << 20
INSTRUCTIONS = ("FROM", "PARAMETER", "TEMPLATE", "SYSTEM", "MESSAGE", "LICENSE", "PARSER")
UNSUPPORTED = ("ADAPTER", "DRAFT", "RENDERER", "REQUIRES")
PARSER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MESSAGE_ROLES = ("system", "user", "assistant")
# Ollama's option names, with their types; `stop` is a list.
PARAMETER_TYPES: dict[str, type] = {
    "num_ctx": int,
    "num_predict": int,
    "temperature": float,
    "top_k": int,
    "top_p": float,
    "min_p": float,
    "repeat_penalty": float,
    "repeat_last_n": int,
    "seed": int,
    "stop": list,
    # Accepted so Ollama's Modelfiles load, and kept for `show`; the engine does not use them.
    "num_gpu": int,
    "num_thread": int,
    "num_batch": int,
    "num_keep": int,
    "main_gpu": int,
    "mirostat": int,
    "mirostat_eta": float,
    "mirostat_tau": float,
    "typical_p": float,
    "presence_penalty": float,
    "frequency_penalty": float,
}
_WORD = re.compile(r"(\S+)[ \t]*(.*)", re.DOTALL)
_BLOB = re.compile(r"^@sha256[:-][0-9a-f]{64}$")
_PATH_PREFIXES = ("/", "~", "./", "../", ".\\", "..\\", "\\")
_PATH_SUFFIXES = (".gguf", ".bin")


@dataclass
class Modelfile:
    source: str | None = None  # FROM: a GGUF path, `@sha256:<hex>`, or a model name
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)
    parser: str | None = None  # the tool-call / thinking parser family, e.g. qwen3_coder


# --- parsing ---------------------------------------------------------------------------------


def parse_modelfile(text: str) -> Modelfile:
    """Parse a Modelfile (at most `MAX_MODELFILE_CHARS` characters, in time linear in its
    length); errors are `InvalidRequestError`s that name the line."""
    if len(text) > MAX_MODELFILE_CHARS:
        raise InvalidRequestError(
            f"the Modelfile is longer than {MAX_MODELFILE_CHARS} characters", "modelfile"
        )
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    parsed = Modelfile()
    index = 0
    while index < len(lines):
        number, line = index + 1, lines[index].lstrip()
        index += 1
        if not line.strip() or line.startswith("#"):
            continue
        word, rest = _split_word(line)
        instruction = _instruction(word, number)
        key = None
        if instruction in ("PARAMETER", "MESSAGE"):
            key, rest = _split_word(rest)
            if not key:
                raise _error(number, f"{instruction} needs a name and a value")
        value, index = _read_value(rest, lines, index, number, instruction)
        _apply(parsed, instruction, key, value, number)
    if parsed.source is None:
        raise InvalidRequestError("the Modelfile has no FROM line", "modelfile")
    return parsed


def _split_word(text: str) -> tuple[str, str]:
    match = _WORD.match(text.lstrip(" \t"))
    return (match.group(1), match.group(2)) if match else ("", "")


def _instruction(word: str, number: int) -> str:
    upper = word.upper()
    if upper in UNSUPPORTED:
        raise _error(number, f"{upper} is not supported")
    if upper not in INSTRUCTIONS:
        expected = ", ".join(INSTRUCTIONS)
        raise _error(number, f"unknown instruction '{word[:40]}'; expected one of {expected}")
    return upper


def _read_value(
    first: str, lines: list[str], index: int, number: int, instruction: str
) -> tuple[str, int]:
    """The value that starts with `first`: to the end of the line, or to the first line end
    that closes its quotes. Returns the value and the index of the line after it.

    Linear in the value's length: each line is looked at once, and joined once at the end."""
    opening = first.strip()
    if not opening:
        raise _error(number, f"{instruction} needs a value")
    quote = '"""' if opening.startswith('"""') else '"' if opening.startswith('"') else ""
    if not quote:
        return opening, index
    parts = [first.lstrip()]
    length = len(parts[0])
    while not _closes(parts[-1], length, quote):
        if index >= len(lines):
            raise _error(number, f"{instruction}: the quoted value is never closed")
        parts.append(lines[index])
        length += 1 + len(lines[index])
        index += 1
    return "\n".join(parts).rstrip()[len(quote) : -len(quote)], index


def _closes(line: str, length: int, quote: str) -> bool:
    """Whether the text read so far (`length` characters, ending with `line`) closes `quote`:
    stripped, it ends with the quote and holds both the opening and the closing one. A blank
    line never closes a quote the line before it left open."""
    end = line.rstrip()
    if not end:
        return False
    return end.endswith(quote) and length - (len(line) - len(end)) >= 2 * len(quote)


def _apply(parsed: Modelfile, instruction: str, key: str | None, value: str, number: int) -> None:
    if instruction == "FROM":
        if parsed.source is not None:
            raise _error(number, "FROM is given twice; a model has one GGUF file")
        parsed.source = value
    elif instruction == "PARAMETER":
        _add_parameter(parsed.parameters, str(key), value, number)
    elif instruction == "MESSAGE":
        parsed.messages.append(_message(str(key), value, number))
    elif instruction == "LICENSE":
        parsed.licenses.append(value)
    elif instruction == "TEMPLATE":
        parsed.template = value
    elif instruction == "PARSER":
        parsed.parser = parser_name(value, number)
    else:
        parsed.system = value


def parser_name(value: str, number: int = 0) -> str:
    """A parser family name as agentport spells it (Ollama writes qwen3-coder)."""
    name = value.strip().lower().replace("-", "_")
    if not PARSER_NAME.match(name):
        message = f"PARSER needs a parser family name, not {value[:40]!r}"
        raise _error(number, message) if number else InvalidRequestError(message, "modelfile")
    return name


def _add_parameter(parameters: dict[str, Any], name: str, value: str, number: int) -> None:
    try:
        add_parameter(parameters, name, value)
    except InvalidRequestError as error:
        raise _error(number, error.message) from None


def _message(role: str, content: str, number: int) -> dict[str, str]:
    if role.lower() not in MESSAGE_ROLES:
        roles = ", ".join(MESSAGE_ROLES)
        raise _error(number, f"MESSAGE role '{role[:40]}' must be one of {roles}")
    return {"role": role.lower(), "content": content}


def _error(number: int, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"Modelfile line {number}: {message}", "modelfile")


# --- parameters ------------------------------------------------------------------------------


def add_parameter(parameters: dict[str, Any], name: str, value: Any) -> None:
    """Type `value` (text from a Modelfile, or JSON) as Ollama does and add it: `stop` values
    accumulate, any other parameter takes the last value given."""
    key = name.lower()
    kind = PARAMETER_TYPES.get(key)
    if kind is None:
        supported = ", ".join(PARAMETER_TYPES)
        raise InvalidRequestError(f"unknown parameter '{name[:40]}'; supported: {supported}")
    if kind is list:
        parameters.setdefault(key, []).extend(_stops(value))
    else:
        parameters[key] = _typed(key, kind, value)


def _typed(name: str, kind: type, value: Any) -> int | float:
    if isinstance(value, bool):
        raise InvalidRequestError(f"parameter {name}: expected a number, got {value}")
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (int, float)) and (kind is float or isinstance(value, int)):
        return kind(value)
    try:
        return kind(str(value).strip())
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise InvalidRequestError(
            f"parameter {name}: expected {noun}, got '{str(value)[:40]}'"
        ) from None


def _stops(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items):
        raise InvalidRequestError("parameter stop: expected text")
    return list(items)


# --- FROM ------------------------------------------------------------------------------------


def is_blob_reference(source: str) -> bool:
    """`@sha256:<hex>`: a blob uploaded with `POST /api/blobs` (what Ollama's CLI sends)."""
    return bool(_BLOB.match(source))


def looks_like_path(source: str) -> bool:
    """FROM names a file: it starts like a path (`/`, `~`, `./`) or ends in `.gguf` / `.bin`."""
    return source.startswith(_PATH_PREFIXES) or source.lower().endswith(_PATH_SUFFIXES)


def gguf_path(source: str, base_dir: Path | None) -> Path | None:
    """The file FROM names, as an absolute path, or None when FROM names a model.

    A source that looks like a path (`/`, `~`, `./`, a `.gguf` ending) must exist; a relative
    one is resolved against `base_dir` (the Modelfile's folder) and needs one. Anything else is
    a file only if `base_dir` holds it."""
    path_like = looks_like_path(source)
    try:
        path = Path(source).expanduser()
    except RuntimeError as exc:  # `~user` for a user that does not exist
        raise InvalidRequestError(f"FROM {source}: {exc}", "modelfile") from exc
    if not path.is_absolute():
        if base_dir is None:
            if path_like:
                raise InvalidRequestError(
                    f"FROM {source}: a relative path needs the Modelfile's folder; "
                    "give an absolute path",
                    "modelfile",
                )
            return None
        path = base_dir / path
    if path.is_file():
        return path.absolute()
    if path_like:
        raise InvalidRequestError(f"FROM {source}: no such file", "modelfile")
    return None


# --- printing --------------------------------------------------------------------------------


def to_modelfile(parsed: Modelfile) -> str:
    """A Modelfile that parses back to `parsed`."""
    lines = []
    if parsed.source is not None:
        lines.append(f"FROM {quote(parsed.source)}")
    if parsed.template is not None:
        lines.append(f"TEMPLATE {quote(parsed.template)}")
    if parsed.system is not None:
        lines.append(f"SYSTEM {quote(parsed.system)}")
    if parsed.parser is not None:
        lines.append(f"PARSER {parsed.parser}")
    for name, value in parsed.parameters.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {name} {quote(str(item))}")
    for message in parsed.messages:
        lines.append(f"MESSAGE {message['role']} {quote(message['content'])}")
    for text in parsed.licenses:
        lines.append(f"LICENSE {quote(text)}")
    return "\n".join(lines) + "\n"


def quote(value: str) -> str:
    """`value` as it must be written to read back unchanged: bare when it can be, else in
    triple quotes, else in plain quotes."""
    if not value:
        return '""'
    for candidate in (value, f'"""{value}"""', f'"{value}"'):
        if candidate and _reads_back(candidate, value):
            return candidate
    raise InvalidRequestError(f"this value cannot be written in a Modelfile: {value[:40]!r}")


def _reads_back(candidate: str, value: str) -> bool:
    lines = candidate.split("\n")
    try:
        read, index = _read_value(lines[0], lines, 1, 1, "value")
    except InvalidRequestError:
        return False
    return read == value and index == len(lines)
