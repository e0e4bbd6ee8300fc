"""Tables that read well at any width: the columns that identify a row are never cut, the
others are dropped, least important first, when the terminal is too narrow (`wide` keeps
them all). Colour on a terminal; plain text when piped or under NO_COLOR (rich decides).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table
from rich.text import Text

CELL_OVERHEAD = 3  # a border and a space on either side of every cell


@dataclass(frozen=True)
class Column:
    """One column: its header, whether it identifies the row (never dropped, never cut), and
    its rank among the others (lower: kept longer); `wrap` lets long text fold instead."""

    header: str
    essential: bool = False
    rank: int = 0
    justify: str = "left"
    wrap: bool = False


def fitted_table(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    wide: bool = False,
    title: str | None = None,
    min_wrap: int = 20,
) -> Table:
    """A table of `rows` (cells in rich markup) with the columns that fit `console.width`:
    every essential one in full, then the others by rank while they fit (a wrapping column
    needs only `min_wrap`). With `wide`, all of them, the console widened to hold them."""
    widths = [
        max([Text.from_markup(c.header).cell_len, *(Text.from_markup(r[i]).cell_len for r in rows)])
        for i, c in enumerate(columns)
    ]
    keep = {i for i, c in enumerate(columns) if c.essential or wide}
    used = 1 + sum(widths[i] + CELL_OVERHEAD for i in keep)
    if wide:
        console.width = max(console.width, used)
    else:
        optional = sorted((c.rank, i) for i, c in enumerate(columns) if i not in keep)
        for _, i in optional:
            need = min(widths[i], min_wrap) if columns[i].wrap else widths[i]
            if used + need + CELL_OVERHEAD <= console.width:
                keep.add(i)
                used += need + CELL_OVERHEAD
    table = Table(title=title, title_justify="left")
    shown = sorted(keep)
    for i in shown:
        column = columns[i]
        table.add_column(
            column.header,
            justify="right" if column.justify == "right" else "left",
            no_wrap=not column.wrap,
            overflow="fold",
            min_width=widths[i] if not column.wrap else None,
        )
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table
