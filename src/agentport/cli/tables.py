"""The rich tables printed by `agentport list`, `agentport ps` and `agentport config`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from agentport.cli.format import context_text, human_bytes, human_time, short_id, slots_text


def _table(*columns: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, no_wrap=column in ("NAME", "ID", "VARIABLE"))
    return table


def _add_row(table: Table, *cells: str) -> None:
    """Cells as plain text: names and values are never read as rich markup."""
    table.add_row(*(Text(str(cell)) for cell in cells))


def models_table(models: Iterable[dict[str, Any]], now: datetime | None = None) -> Table:
    """NAME, ID, SIZE, MODIFIED for the models of `GET /api/tags`."""
    table = _table("NAME", "ID", "SIZE", "MODIFIED")
    for model in models:
        _add_row(
            table,
            model.get("name", "?"),
            short_id(model.get("digest")),
            human_bytes(model.get("size")),
            human_time(model.get("modified_at"), now, never="-"),
        )
    return table


def running_table(models: Iterable[dict[str, Any]], now: datetime | None = None) -> Table:
    """NAME, ID, PLANNED, ACTUAL, CONTEXT, SLOTS, UNTIL for the models of `GET /api/ps`."""
    table = _table("NAME", "ID", "PLANNED", "ACTUAL", "CONTEXT", "SLOTS", "UNTIL")
    for model in models:
        memory = model.get("memory") if isinstance(model.get("memory"), dict) else {}
        _add_row(
            table,
            model.get("name", "?"),
            short_id(model.get("digest")),
            human_bytes(_total(memory.get("planned"))),
            human_bytes(_total(memory.get("actual")) or model.get("size")),
            context_text(model),
            slots_text(model),
            human_time(model.get("expires_at"), now),
        )
    return table


def _total(part: Any) -> int | None:
    return part.get("total") if isinstance(part, dict) else None


def settings_table(rows: Iterable[tuple[str, str, str, str]]) -> Table:
    """VARIABLE, VALUE, SOURCE, DESCRIPTION for `config.describe(settings)`."""
    table = _table("VARIABLE", "VALUE", "SOURCE", "DESCRIPTION")
    for row in rows:
        _add_row(table, *row)
    return table
