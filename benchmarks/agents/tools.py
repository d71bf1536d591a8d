"""The same tools, as a JSON function-calling agent sees them.

Every remote function of a `World`, and every public method of its remote
objects (``home.set_light``), becomes a tool with a JSON schema built from
its signature and docstring. Arguments arriving as JSON are converted to the
annotated types (a Decimal from "12.50" or 12.5, a date from "2024-05-01", an
enum from its value or name), as a careful function-calling framework does;
results go back as JSON text, cut to the same output budget cavelite's cells
get.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import inspect
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.agents.task import World


@dataclass(frozen=True)
class Tool:
    name: str
    function: Callable[..., Any]
    description: str
    parameters: dict[str, Any]

    def schema(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


def tools_of(world: World) -> dict[str, Tool]:
    """Every callable the world offers, by tool name."""
    found: dict[str, Tool] = {}
    for name, value in sorted(world.tools.items()):
        if inspect.isroutine(value):
            found[name] = _tool(name, value)
            continue
        for attr in sorted(dir(value)):
            if attr.startswith("_"):
                continue
            method = getattr(value, attr)
            if callable(method):
                found[f"{name}.{attr}"] = _tool(f"{name}.{attr}", method)
    return found


def _tool(name: str, function: Callable[..., Any]) -> Tool:
    signature = inspect.signature(function)
    hints = _hints(function)
    properties: dict[str, Any] = {}
    required = []
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        properties[parameter.name] = _json_type(hints.get(parameter.name, Any))
        if parameter.default is parameter.empty:
            required.append(parameter.name)
        else:
            properties[parameter.name]["default"] = _jsonable(parameter.default)
    doc = inspect.getdoc(function) or ""
    return Tool(name, function, doc, {"type": "object", "properties": properties, "required": required})


def _hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:
        return {}


def _json_type(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _json_type(options[0]) if len(options) == 1 else {}
    if origin in (list, tuple, set, frozenset):
        args = typing.get_args(hint)
        return {"type": "array", "items": _json_type(args[0]) if args else {}}
    if origin is dict or hint is dict:
        return {"type": "object"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is Decimal:
        return {"type": "string", "description": 'a decimal number, e.g. "12.50"'}
    if hint is dt.date:
        return {"type": "string", "description": "a date, YYYY-MM-DD"}
    if hint is dt.datetime:
        return {"type": "string", "description": "a date and time, YYYY-MM-DDTHH:MM"}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"type": "string", "enum": [str(m.value) for m in hint]}
    if hint is str:
        return {"type": "string"}
    if hint is list:
        return {"type": "array"}
    return {}


def call(tool: Tool, arguments: dict[str, Any]) -> Any:
    """Call ``tool`` with JSON ``arguments`` converted to its annotated types."""
    hints = _hints(tool.function)
    signature = inspect.signature(tool.function)
    unknown = set(arguments) - set(signature.parameters)
    if unknown:
        raise TypeError(f"{tool.name}() got unexpected argument(s): {', '.join(sorted(unknown))}")
    converted = {k: _convert(v, hints.get(k, Any)) for k, v in arguments.items()}
    return tool.function(**converted)


def _convert(value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(value, options[0]) if len(options) == 1 else value
    if origin in (list, tuple, set):
        args = typing.get_args(hint)
        items = [_convert(v, args[0] if args else Any) for v in value]
        return origin(items)
    if hint is Decimal:
        return Decimal(str(value))
    if hint is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint is dt.date and isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    if hint is dt.datetime and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum) and not isinstance(value, hint):
        for member in hint:
            if str(value) in (str(member.value), member.name):
                return member
        raise ValueError(f"{value!r} is not one of {[str(m.value) for m in hint]}")
    return value


def to_json(value: Any, max_chars: int) -> str:
    """A tool result as JSON text, cut to ``max_chars`` (head and tail kept, as cavelite does)."""
    return clip(json.dumps(_jsonable(value), ensure_ascii=False), max_chars)


def clip(text: str, max_chars: int) -> str:
    """Keep head and tail of ``text`` within about ``max_chars`` (cavelite's rule for cell output)."""
    if len(text) <= max_chars:
        return text
    keep = max(max_chars - 60, 20)
    head, tail = text[: keep * 2 // 3], text[-(keep // 3) :]
    return f"{head}\n[... {len(text) - len(head) - len(tail)} characters cut ...]\n{tail}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, pd.DataFrame):
        return _jsonable(value.to_dict(orient="records"))
    if isinstance(value, pd.Series):
        return _jsonable(value.to_dict())
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, dict):
        return {str(_jsonable(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (DataFrames as records, Decimals as strings)."""
    return _jsonable(value)


def describe_for_code(world: World) -> str:
    """The tools as a code agent reads them: signatures and docstrings."""
    lines = []
    for name, value in sorted(world.tools.items()):
        if inspect.isroutine(value):
            lines.append(f"- {name}{inspect.signature(value)}: {_first_line(value)}")
            continue
        lines.append(f"- {name}: {type(value).__name__}. {_first_line(value)}")
        for attr in sorted(dir(value)):
            method = getattr(value, attr)
            if not attr.startswith("_") and callable(method):
                lines.append(f"    {name}.{attr}{inspect.signature(method)}: {_first_line(method)}")
    for cls in world.types:
        lines.append(f"- class {cls.__name__}: {_first_line(cls)}")
    return "\n".join(lines)


def _first_line(obj: Any) -> str:
    return (inspect.getdoc(obj) or "").strip().split("\n\n")[0].replace("\n", " ")
