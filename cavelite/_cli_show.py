"""``/show NAME``: a bounded terminal view of a retrieved value.

Tables stay small however big the value is (the first rows and columns, and
how many more there are). Numbers are formatted by pandas itself, column by
column, exactly as the cell's own ``Out:`` showed them: `/show` must never
make a value look different from what the model saw. A Series is called a
Series.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from rich.console import Group, RenderableType
from rich.pretty import Pretty
from rich.table import Table
from rich.text import Text

SHOW_ROWS = 15
SHOW_COLS = 12
_MAX_CELL = 60


def bounded_view(name: str, value: Any) -> RenderableType:
    """A terminal view of ``value`` that stays small however big the value is."""
    if isinstance(value, pd.DataFrame):
        return _frame_view(name, value)
    if isinstance(value, pd.Series):
        return _series_view(name, value)
    if isinstance(value, np.ndarray):
        return Text(f"{name}: ndarray {value.shape} {value.dtype}\n"
                    + np.array2string(value, threshold=200, edgeitems=4))
    return Group(Text(f"{name}: {type(value).__name__}", style="bold"),
                 Pretty(value, max_length=20, max_string=400, max_depth=4))


def _frame_view(name: str, frame: pd.DataFrame) -> RenderableType:
    rows, cols = frame.shape
    shown = frame.iloc[:SHOW_ROWS, :SHOW_COLS]
    header = Text(f"{name}: DataFrame · {rows:,} rows × {cols} columns", style="bold")
    table = Table()
    indexed = not isinstance(frame.index, pd.RangeIndex)
    columns = []
    if indexed:
        table.add_column(str(frame.index.name or ""), style="bold")
        columns.append(_formatted(shown.index.to_series(index=range(len(shown)))))
    for column in shown.columns:
        numeric = pd.api.types.is_numeric_dtype(shown[column])
        table.add_column(f"{column}\n{frame[column].dtype}", justify="right" if numeric else "left")
        columns.append(_formatted(shown[column]))
    for row in zip(*columns, strict=True) if columns else ():
        table.add_row(*(_cell(text) for text in row))
    table.caption = _more(rows - SHOW_ROWS, "rows", cols - SHOW_COLS, "columns")
    return Group(header, table)


def _series_view(name: str, series: pd.Series) -> RenderableType:
    size = len(series)
    shown = series.iloc[:SHOW_ROWS]
    label = f" · named {series.name!r}" if series.name is not None and series.name != name else ""
    header = Text(f"{name}: Series · {size:,} items · dtype {series.dtype}{label}", style="bold")
    table = Table()
    table.add_column(str(series.index.name or ""), style="bold")
    numeric = pd.api.types.is_numeric_dtype(series)
    title = str(series.name) if series.name is not None else ""
    table.add_column(title, justify="right" if numeric else "left")
    for index, text in zip(_formatted(shown.index.to_series(index=range(len(shown)))), _formatted(shown),
                           strict=True):
        table.add_row(_cell(index), _cell(text))
    table.caption = _more(size - SHOW_ROWS, "items", 0, "")
    return Group(header, table)


def _formatted(column: pd.Series) -> list[str]:
    """Each value as pandas prints it in this column (one common precision, NaN, dates...)."""
    if len(column) == 0:
        return []
    lines = column.to_string(index=False, header=False).split("\n")
    if len(lines) != len(column):  # a value with a line break in it: fall back to one per value
        return [str(v) for v in column]
    return [line.strip() for line in lines]


def _cell(text: str) -> Text:
    return Text(text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…")


def _more(rows: int, row_word: str, cols: int, col_word: str) -> str | None:
    more = []
    if rows > 0:
        more.append(f"{rows:,} more {row_word}")
    if cols > 0:
        more.append(f"{cols} more {col_word}")
    return " · ".join(more) or None
