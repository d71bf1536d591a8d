"""The words the model reads: system prompt, per-turn state, observations.

The system prompt depends only on the instructions and on what the host
injected, and is rendered deterministically, so it stays byte-identical across
steps and turns and a provider's prompt cache keeps hitting. Everything that
changes (variables, cell results) travels in user messages instead: a state
block at the start of each turn and an observation after each cell, both
bounded in size. The notes the loop adds to steer a weak model (echoes,
answers without code, repeated blocks, NameError hints) are `cavelite.guidance`.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import sys
from collections.abc import Collection, Sequence
from typing import Any

from cavelite.extract import Extraction
from cavelite.runtime.results import CellResult, Injected, VariableInfo

MAX_LISTED_VARIABLES = 60
MAX_LINE_CHARS = 600
MAX_DOC_CHARS = 400
STATE_HEADER = "[runtime state]"

_HOW_TO_WORK = """\
## How you work

You operate a live Python {version} runtime by writing code. Each reply may hold
one ```python block; it runs at once and you get its result back in the next
message. Then decide the next step.

- State persists between blocks and between turns: variables, imports and the
  functions you define stay until the user resets the runtime.
- The data you need is already in the runtime, in the variables listed in the
  state block of each user message. Work on it there; do not retype data.
- Look at data through summaries: `df.head()`, `df.describe()`, `df.shape`,
  `len(x)`, `x[:5]`. Never print a whole large object: output is cut to about
  {max_output_chars} characters (head and tail are kept).
- The value of a block's last expression is shown, as in a notebook.
- A block that fails changes nothing: read the error, fix the code, resend it.
- Files, network, subprocesses and environment variables are not available.
  Private attributes of library objects and `df.query`/`df.eval` are refused:
  filter with boolean masks, e.g. `df[df.amount > 10]`.{modules}
- Write one block per reply and stop after it: only the first block runs.
- When the task is done, reply in plain text without any code block. That reply
  is your final answer. When asked to store a result in a variable, do so; the
  user reads it directly from the runtime."""

_EXAMPLE = """\
## Example

User:
[runtime state] 1 variable(s), already in the runtime (use them by name):
- prices (list): 3 items: [4.0, 2.5, 3.5]

Add up `prices` and keep the total in `total`.

Assistant:
```python
total = sum(prices)
total
```

User:
[cell ran in 0.00s]
[value] 10.0
[variables created or changed]
- total (float): 10.0

Assistant:
The total is 10.0, kept in `total`."""


def system_prompt(
    instructions: str,
    injected: Sequence[Injected],
    *,
    max_output_chars: int = 4000,
    modules: Sequence[str] = (),
    example: bool = True,
) -> str:
    """The byte-stable system prompt: instructions, how to work, what was injected.

    ``modules`` are the runtime's preloaded modules, named so the model imports
    them rather than wondering what is available. ``example`` adds one short
    worked exchange.
    """
    parts = []
    if instructions.strip():
        parts.append(instructions.strip())
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    preloaded = f"\n  Preloaded, import them freely: {', '.join(modules)}." if modules else ""
    if "matplotlib" in modules:
        preloaded += ("\n- Charts: draw with matplotlib and call `plt.show()` (or leave the figure "
                      "open);\n  it reaches the user as an image. Never `savefig` to a file.")
    parts.append(_HOW_TO_WORK.format(version=version, max_output_chars=max_output_chars, modules=preloaded))
    if example:  # small models follow a shown exchange far better than described rules
        parts.append(_EXAMPLE)
    ordered = sorted(injected, key=lambda item: item.name)
    functions = [_describe_function(i) for i in ordered if i.kind == "function"]
    objects = [_describe_object(i) for i in ordered if i.kind == "object"]
    types = [_describe_type(i) for i in ordered if i.kind == "type"]
    if functions:
        parts.append("## Functions you can call\n\n" + "\n".join(functions))
    if objects:
        parts.append(
            "## Objects you can use\n\nThey live in the host; calling their methods acts "
            "on the real thing.\n\n" + "\n".join(objects)
        )
    if types:
        parts.append("## Types you can use\n\n" + "\n".join(types))
    return "\n\n".join(parts) + "\n"


def turn_message(text: str, variables: Sequence[VariableInfo], *, hidden: Collection[str] = ()) -> str:
    """A user message: the runtime's current variables, then what the user said.

    ``hidden`` names what the system prompt already describes (injected
    functions, objects, classes), so it is not listed again as a variable.
    """
    return f"{state_block(variables, hidden=hidden)}\n\n{text}"


def state_block(variables: Sequence[VariableInfo], *, hidden: Collection[str] = ()) -> str:
    """The variables as the model should picture them, bounded in size.

    Each line reads ``- name (type): summary``: a description, deliberately
    not Python (``x: int = 3`` was copied into cells by small models).
    """
    visible = [v for v in variables if not v.name.startswith("_") and v.name not in hidden]
    if not visible:
        ready = f" ({', '.join(sorted(hidden))}: ready, as described above)" if hidden else ""
        return f"{STATE_HEADER} no variables yet{ready}"
    lines = [f"{STATE_HEADER} {len(visible)} variable(s), already in the runtime (use them by name):"]
    for info in visible[:MAX_LISTED_VARIABLES]:
        lines.append("- " + _clip_line(variable_line(info)))
    if len(visible) > MAX_LISTED_VARIABLES:
        lines.append(f"- ... and {len(visible) - MAX_LISTED_VARIABLES} more not listed")
    return "\n".join(lines)


def variable_line(info: VariableInfo) -> str:
    """``name (type): summary -- description``."""
    text = f"{info.name} ({info.type_name}): {info.summary}"
    return f"{text} -- {info.description}" if info.description else text


def observation(result: CellResult, extraction: Extraction, *, max_chars: int) -> str:
    """What the model reads after a cell: outcome, output, errors and variable changes."""
    if result.ok:
        head = f"[cell ran in {result.duration_s:.2f}s]"
    elif result.error is not None and result.error.kind == "policy":
        head = "[cell refused]"
    else:
        kind = result.error.kind if result.error else "error"
        head = f"[cell failed: {kind}" + ("; the namespace is unchanged]" if result.rolled_back else "]")
        if result.rolled_back:
            head += ("\nNothing from this block was kept, not even the lines before the error: "
                     "fix the error and send the whole block again.")
    parts = [head]
    body = result.for_model()
    if body != "(no output)" or not (result.changed or result.deleted):
        parts.append(clip(body, max_chars, kept=where_output_is_kept(result)))
    if result.stdout_truncated:
        parts.append(f"[output truncated: only head and tail are shown; {where_output_is_kept(result)}]")
    if result.changed:
        changed = [_clip_line(variable_line(info)) for info in result.changed[:MAX_LISTED_VARIABLES]]
        more = len(result.changed) - len(changed)
        if more > 0:
            changed.append(f"... and {more} more")
        parts.append("[variables created or changed]\n" + "\n".join("- " + c for c in changed))
    if result.deleted:
        parts.append("[variables deleted] " + ", ".join(result.deleted))
    if extraction.ignored_blocks:
        parts.append(ignored_blocks_note(extraction.ignored_blocks))
    if result.ok:
        parts.append(NEXT_NOTE)
    return "\n".join(parts)


NEXT_NOTE = "[next] If this did what was asked, reply now in plain text, without code."


def ignored_blocks_note(count: int) -> str:
    return (
        f"[note] Your reply had {count} more python block(s) after the first; they did not "
        "run. Send one block per reply."
    )


def where_output_is_kept(result: CellResult) -> str:
    """Where the whole stdout of a cut cell output can be read, said for the model."""
    if result.output_index is not None:
        return f"the full output is in cell_outputs[{result.output_index}]"
    if result.rolled_back:
        return "the rest was not kept (the cell was rolled back); print less"
    return "the rest was not kept; print less"


def clip(text: str, max_chars: int, *, kept: str = "") -> str:
    """Keep head and tail of ``text`` within about ``max_chars``, saying what was cut (and ``kept``)."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    keep = max(max_chars - 60, 20)
    head, tail = text[: keep * 2 // 3], text[-(keep // 3) :]
    where = f"; {kept}" if kept else ""
    return f"{head}\n[... {len(text) - len(head) - len(tail)} characters cut{where} ...]\n{tail}"


def _clip_line(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_LINE_CHARS else text[: MAX_LINE_CHARS - 3] + "..."


def _doc(doc: str) -> str:
    doc = " ".join(doc.strip().split("\n\n")[0].split())
    return doc if len(doc) <= MAX_DOC_CHARS else doc[: MAX_DOC_CHARS - 3] + "..."


def _suffix(item: Injected) -> str:
    parts = []
    if item.description:
        parts.append(f"    {_doc(item.description)}")
    if item.doc:
        parts.append(f"    {_doc(item.doc)}")
    return "".join("\n" + p for p in parts)


def _describe_function(item: Injected) -> str:
    signature = item.signature or "(...)"
    marker = "async def" if item.is_async else "def"
    note = "  # async: call it with `await`" if item.is_async else ""
    return f"- {marker} {item.name}{signature}{note}{_suffix(item)}"


def _describe_object(item: Injected) -> str:
    text = f"- {item.name}: {item.type_name}" + _suffix(item)
    # Each method with its object's name: small models otherwise call ``fields()`` bare.
    if any("(" in method for method in item.methods):
        text += "\n    methods:" + "".join(f"\n      {item.name}.{method}" for method in item.methods)
    elif item.methods:
        text += "\n    methods: " + ", ".join(f"{item.name}.{method}" for method in item.methods)
    return text


def _describe_type(item: Injected) -> str:
    text = f"- class {item.name}{item.signature}" + _suffix(item)
    if item.methods:
        text += "\n    members: " + ", ".join(item.methods)
    return text


def enrich(item: Injected, value: Any) -> Injected:
    """Fill in what the model needs to use an injected class or object well.

    For a class: its constructor signature (dataclass and pydantic fields show
    there) and its members (enum members, public methods). For a remote object:
    each method's signature and first doc line. Computed in the host from the
    value the caller handed over; only strings are kept.
    """
    if item.kind == "type" and isinstance(value, type):
        return dataclasses.replace(
            item,
            signature=item.signature or _class_signature(value),
            methods=item.methods or _class_members(value),
        )
    if item.kind == "object":
        return dataclasses.replace(item, methods=tuple(_method_line(value, name) for name in item.methods))
    return item


def _class_signature(cls: type) -> str:
    if issubclass(cls, enum.Enum):
        return ""
    signature = _signature_of(cls)
    return "" if signature == "(...)" else signature.removesuffix(" -> None")


def _class_members(cls: type) -> tuple[str, ...]:
    if issubclass(cls, enum.Enum):
        return tuple(f"{member.name}={member.value!r}" for member in cls)
    names = sorted(
        name
        for name, attr in vars(cls).items()
        if not name.startswith("_") and (callable(attr) or isinstance(attr, property))
    )
    lines = []
    for name in names:
        attr = getattr(cls, name)
        if not callable(attr):
            lines.append(name)
            continue
        # A plain function on the class is a method: callers never pass ``self``.
        is_method = inspect.isfunction(vars(cls)[name])
        lines.append(f"{name}{_signature_of(attr, drop_first=is_method)}")
    return tuple(lines)


def _method_line(obj: Any, name: str) -> str:
    method = getattr(obj, name, None)
    if not callable(method):
        return name
    doc = _doc(inspect.getdoc(method) or "").split(". ")[0]
    line = f"{name}{_signature_of(method)}"
    return f"{line}: {doc}" if doc else line


class _Annotation:
    """Shows a string annotation bare: ``x: int``, not ``x: 'int'``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _signature_of(function: Any, *, drop_first: bool = False) -> str:
    """``inspect.signature`` as text, with postponed (string) annotations unquoted."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return "(...)"

    def bare(annotation: Any) -> Any:
        return _Annotation(annotation) if isinstance(annotation, str) else annotation

    parameters = [p.replace(annotation=bare(p.annotation)) for p in signature.parameters.values()]
    if drop_first:
        parameters = parameters[1:]
    return str(signature.replace(parameters=parameters, return_annotation=bare(signature.return_annotation)))
