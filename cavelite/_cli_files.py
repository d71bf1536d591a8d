"""Data files for the `cavelite` command: loading ``--data`` files and ``/save``.

Loading happens in the host (the worker has no file access, by design): the
file becomes a DataFrame that is then copied into the runtime. Saving is the
reverse: ``retrieve`` a variable, then write it here with the host's rights.
Every failure is a `DataFileError` with a message fit for a terminal, so the
command can exit with a clear line instead of a traceback.
"""

from __future__ import annotations

import csv
import json
import keyword
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cavelite.errors import CaveliteError

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
LOADABLE = (".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet", ".pq", ".xlsx", ".xlsm")
SAVABLE = (".csv", ".parquet", ".pq", ".json", ".pkl", ".pickle", ".xlsx")
ON_BAD_LINES = ("error", "skip")
_SHOWN_BAD = 5


class DataFileError(CaveliteError):
    """A data file could not be read or written (missing, unreadable, wrong format)."""


@dataclass(frozen=True)
class DataFile:
    """A file loaded as a DataFrame, and the runtime name it goes under."""

    name: str
    path: Path
    frame: pd.DataFrame
    note: str = ""  # what loading changed, e.g. skipped rows: the model is told too

    @property
    def description(self) -> str:
        return f"loaded from the file {self.path.name}" + (f"; {self.note}" if self.note else "")


def variable_name(path: Path) -> str:
    """The file's stem as a Python identifier: ``2024 sales-EU.csv`` -> ``sales_2024_eu``-like.

    Non-identifier characters become ``_``; a leading digit gets a ``data_``
    prefix; a keyword gets a trailing ``_``; runtime-reserved shapes
    (``_x_``) lose their underscores.
    """
    stem = re.sub(r"\W+", "_", path.stem.strip().lower()).strip("_") or "data"
    if stem[0].isdigit():
        stem = "data_" + stem
    if keyword.iskeyword(stem):
        stem += "_"
    return stem


def split_spec(spec: str) -> tuple[str | None, str]:
    """``--data NAME=PATH`` into (NAME, PATH); a plain path gives (None, PATH).

    Only a valid Python name before the first ``=`` makes it a name, so a
    path such as ``./a=b.csv`` stays a path; ``my-sales=x.csv`` is refused
    with the reason rather than read as a file that does not exist.
    """
    name, sep, rest = spec.partition("=")
    if not sep or not rest or "/" in name or "\\" in name:
        return None, spec
    if not name.isidentifier() or keyword.iskeyword(name):
        raise DataFileError(f"--data {spec}: {name!r} is not a valid Python variable name "
                            "(letters, digits and _, not starting with a digit)")
    return name, rest


def load(spec: str, taken: set[str] | None = None, *, encoding: str | None = None,
         on_bad_lines: str = "error") -> DataFile:
    """Read one ``--data [NAME=]FILE`` into a DataFrame; raise `DataFileError` with a clear reason."""
    name, path_text = split_spec(spec)
    path = Path(path_text).expanduser()
    suffix = path.suffix.lower()
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    if path.is_dir():
        raise DataFileError(f"{path}: is a directory; pass one of the files in it")
    if not path.is_file():
        raise DataFileError(f"{path}: is not a regular file (a pipe or a device cannot be loaded)")
    if suffix not in LOADABLE:
        raise DataFileError(
            f"{path}: unsupported file type {suffix or '(none)'}; use one of {', '.join(LOADABLE)}"
        )
    note = ""
    try:
        frame, note = _read(path, suffix, encoding, on_bad_lines)
    except DataFileError:
        raise
    except UnicodeDecodeError as exc:
        raise DataFileError(
            f"{path}: is not {encoding or 'UTF-8'} text ({exc.reason} at byte {exc.start}); "
            "pass its encoding, e.g. --encoding latin-1"
        ) from exc
    except LookupError as exc:
        raise DataFileError(f"{path}: unknown --encoding {encoding!r}") from exc
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataFileError(f"{path}: cannot read it as {suffix[1:]}: {reason}") from exc
    if name is None:
        name = variable_name(path)
        base, n = name, 2
        while taken is not None and name in taken:  # two files with one stem keep both
            name, n = f"{base}_{n}", n + 1
    elif taken is not None and name in taken:
        raise DataFileError(f"--data {spec}: the name {name!r} is already used by another file")
    return DataFile(name, path, _parse_dates(frame), note)


def _read(path: Path, suffix: str, encoding: str | None, on_bad_lines: str) -> tuple[pd.DataFrame, str]:
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, "\t" if suffix == ".tsv" else ",", encoding, on_bad_lines)
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True, encoding=encoding), ""
    if suffix == ".json":
        with path.open("rb") if encoding is None else path.open(encoding=encoding) as f:
            data = json.load(f)
        # A list of records or a dict of columns: both read naturally as a table.
        if isinstance(data, list):
            return pd.DataFrame.from_records(data), ""
        if isinstance(data, dict):
            return pd.DataFrame(data), ""
        raise DataFileError(f"{path}: JSON must be a list of records or a dict of columns")
    if suffix in (".xlsx", ".xlsm"):
        _need(path, "openpyxl", "Excel files")
        with pd.ExcelFile(path, engine="openpyxl") as book:
            names = book.sheet_names
            frame = pd.read_excel(book, sheet_name=names[0])
        return frame, (f"the first of {len(names)} sheets ({names[0]!r})" if len(names) > 1 else "")
    _need(path, "pyarrow", "Parquet files")
    return pd.read_parquet(path), ""


def _read_csv(path: Path, sep: str, encoding: str | None, on_bad_lines: str) -> tuple[pd.DataFrame, str]:
    """A CSV/TSV; rows with more fields than the header are named, and dropped only if asked."""
    try:
        frame = pd.read_csv(path, sep=sep, encoding=encoding, on_bad_lines=on_bad_lines)  # type: ignore[call-overload]
    except pd.errors.ParserError as exc:
        width, bad = _long_rows(path, sep, encoding)
        if not bad:
            raise
        raise DataFileError(
            f"{path}: {_rows_text(bad)} more fields than the header's {width}; fix the file, "
            "or pass --on-bad-lines skip to load it without them"
        ) from exc
    if on_bad_lines == "skip":
        width, bad = _long_rows(path, sep, encoding)
        if bad:
            return frame, f"skipped {len(bad)} malformed row(s): {_rows_text(bad, verb=False)}"
    return frame, ""


def _long_rows(path: Path, sep: str, encoding: str | None) -> tuple[int, list[tuple[int, int]]]:
    """The header's width and (line, fields) of each row that has more fields than it."""
    with path.open(newline="", encoding=encoding or "utf-8", errors="replace") as f:
        reader = csv.reader(f, delimiter=sep)
        header = next(reader, [])
        bad = [(reader.line_num, len(row)) for row in reader if len(row) > len(header)]
    return len(header), bad


def _rows_text(bad: list[tuple[int, int]], *, verb: bool = True) -> str:
    shown = ", ".join(f"line {line} ({fields} fields)" for line, fields in bad[:_SHOWN_BAD])
    more = f" and {len(bad) - _SHOWN_BAD} more" if len(bad) > _SHOWN_BAD else ""
    if not verb:
        return shown + more
    return f"{len(bad)} row(s) have" + (f" ({shown}{more})" if bad else "")


def _need(path: Path, package: str, what: str) -> None:
    try:
        __import__(package)
    except ImportError:
        raise DataFileError(f"{path}: {what} need {package} (pip install {package})") from None


def _parse_dates(frame: pd.DataFrame) -> pd.DataFrame:
    """Turn text columns holding ISO dates into datetimes, so ``.dt`` works as a model expects."""
    for column in frame.columns:
        series = frame[column]
        if series.dtype != object and not pd.api.types.is_string_dtype(series):
            continue
        sample = series.dropna().head(20)
        if len(sample) and all(isinstance(v, str) and _ISO_DATE.match(v) for v in sample):
            try:
                frame[column] = pd.to_datetime(series, format="ISO8601")
            except (ValueError, TypeError):
                continue  # looked like dates, was not: keep the text
    return frame


def save(value: Any, path_text: str) -> Path:
    """Write a retrieved value by extension (CSV, Parquet, JSON, pickle); return the path."""
    path = Path(path_text).expanduser()
    suffix = path.suffix.lower()
    if suffix not in SAVABLE:
        raise DataFileError(f"{path}: unknown format {suffix or '(none)'}; use {', '.join(SAVABLE)}")
    try:
        if suffix in (".pkl", ".pickle"):
            with path.open("wb") as f:
                pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        elif suffix == ".json":
            _save_json(value, path)
        else:
            frame = _as_frame(value, path)
            index = not isinstance(frame.index, pd.RangeIndex)
            if suffix == ".csv":
                frame.to_csv(path, index=index)
            elif suffix == ".xlsx":
                _need(path, "openpyxl", "Excel files")
                frame.to_excel(path, index=index, engine="openpyxl")
            else:
                _need(path, "pyarrow", "Parquet files")
                frame.to_parquet(path)
    except DataFileError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise DataFileError(f"{path}: cannot write it: {exc}") from exc
    return path


def _as_frame(value: Any, path: Path) -> pd.DataFrame:
    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, pd.Series):
        return value.to_frame()
    if isinstance(value, dict):
        return pd.DataFrame({"key": list(value), "value": list(value.values())})
    if isinstance(value, list | tuple):
        return pd.DataFrame(list(value))
    try:
        return pd.DataFrame(value)
    except (ValueError, TypeError):
        raise DataFileError(
            f"{path}: a {type(value).__name__} is not a table; save it as .json or .pkl"
        ) from None


def _save_json(value: Any, path: Path) -> None:
    if isinstance(value, pd.DataFrame | pd.Series):
        orient = "records" if isinstance(value, pd.DataFrame) and isinstance(
            value.index, pd.RangeIndex) else "index" if isinstance(value, pd.DataFrame) else None
        value.to_json(path, orient=orient, date_format="iso", indent=2)
        return
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        value = value.tolist()
    with path.open("w") as f:
        json.dump(value, f, indent=2, default=str)
        f.write("\n")
