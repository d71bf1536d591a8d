"""Data files for the `cavelite` command: loading ``--data`` files and ``/save``.

Loading happens in the host (the worker has no file access, by design): the
file becomes a DataFrame that is then copied into the runtime. Saving is the
reverse: ``retrieve`` a variable, then write it here with the host's rights.
Every failure is a `DataFileError` with a message fit for a terminal, so the
command can exit with a clear line instead of a traceback.
"""

from __future__ import annotations

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
LOADABLE = (".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet", ".pq")
SAVABLE = (".csv", ".parquet", ".pq", ".json", ".pkl", ".pickle")


class DataFileError(CaveliteError):
    """A data file could not be read or written (missing, unreadable, wrong format)."""


@dataclass(frozen=True)
class DataFile:
    """A file loaded as a DataFrame, and the runtime name it goes under."""

    name: str
    path: Path
    frame: pd.DataFrame

    @property
    def description(self) -> str:
        return f"loaded from the file {self.path.name}"


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


def load(path_text: str, taken: set[str] | None = None) -> DataFile:
    """Read one ``--data`` file into a DataFrame; raise `DataFileError` with a clear reason."""
    path = Path(path_text).expanduser()
    suffix = path.suffix.lower()
    if suffix not in LOADABLE:
        raise DataFileError(
            f"{path}: unsupported file type {suffix or '(none)'}; use one of {', '.join(LOADABLE)}"
        )
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    try:
        frame = _read(path, suffix)
    except DataFileError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataFileError(f"{path}: cannot read it as {suffix[1:]}: {reason}") from exc
    name = variable_name(path)
    base, n = name, 2
    while taken is not None and name in taken:  # two files with one stem keep both
        name, n = f"{base}_{n}", n + 1
    return DataFile(name, path, _parse_dates(frame))


def _read(path: Path, suffix: str) -> pd.DataFrame:
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix == ".tsv":
        return pd.read_csv(path, sep="\t")
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True)
    if suffix == ".json":
        with path.open("rb") as f:
            data = json.load(f)
        # A list of records or a dict of columns: both read naturally as a table.
        if isinstance(data, list):
            return pd.DataFrame.from_records(data)
        if isinstance(data, dict):
            return pd.DataFrame(data)
        raise DataFileError(f"{path}: JSON must be a list of records or a dict of columns")
    _need_pyarrow(path)
    return pd.read_parquet(path)


def _need_pyarrow(path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise DataFileError(f"{path}: Parquet needs pyarrow (pip install pyarrow)") from None


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
            if suffix == ".csv":
                frame.to_csv(path, index=not isinstance(frame.index, pd.RangeIndex))
            else:
                _need_pyarrow(path)
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
