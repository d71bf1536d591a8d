"""What the loop tells a weak model beyond the plain observation, and when.

Small models answer without running code, say the request back, misspell a
name, resend a block that already ran or leave a fence open. Each of those
has a note here, and the checks that decide when a reply earns one: pure
functions of the reply, the request and what the runtime holds, so
`cavelite.prompt` stays the byte-stable system prompt, state block and
observations, and `CaveLite` only decides where the notes go. Each lever is
measured by ``benchmarks/agents``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from cavelite.errors import CaveRuntimeError
from cavelite.prompt import STATE_HEADER
from cavelite.runtime.results import CellResult, Injected

if TYPE_CHECKING:
    from cavelite.chat_run import ChatRun
    from cavelite.runtime.like import RuntimeLike

# The completion check sends the model back at most this often per chat.
MAX_NUDGES = 2


async def not_an_answer(runtime: RuntimeLike, run: ChatRun, text: str) -> str:
    """Why a reply without code is visibly not the answer ("" if it may be), twice per chat at most.

    It says the request back; or no code ran for a request that names what
    the runtime holds, or the reply states a number nobody computed (it
    claims what it never looked up or did); or every block of the chat failed, so nothing
    was done; or the user named a variable in backticks that the runtime
    still lacks.
    """
    if run.nudges >= MAX_NUDGES:
        return ""
    if is_echo(text, run.request):
        return ECHO_NOTE
    if not run.cells and run.nudges == 0 and run.held:
        if claims_unseen(text, run.request, run.held):
            return NO_CODE_NOTE
    if run.cells and not any(cell.result.ok for cell in run.cells):
        return FAILED_NOTE
    wanted = requested_names(run.request)
    if not wanted:
        return ""
    try:
        present = {v.name for v in await runtime.avariables()}
    except CaveRuntimeError:
        return ""
    present |= {item.name for item in runtime.injected()}
    missing = [name for name in wanted if name not in present]
    return missing_note(missing) if missing else ""


async def hint_for(runtime: RuntimeLike, result: CellResult, notes: Mapping[str, Injected]) -> str:
    """The `name_hint` for a failed cell, from what the runtime holds now ("" if none applies).

    ``notes`` are the richer descriptions of injected values (their methods),
    which say where a bare method name really lives.
    """
    if result.error is None or result.error.type != "NameError":
        return ""
    injected = [notes.get(item.name, item) for item in runtime.injected()]
    try:
        names = [v.name for v in await runtime.avariables()] + [i.name for i in injected]
    except CaveRuntimeError:
        return ""
    return name_hint(result, injected, names)


_UNDEFINED = re.compile(r"name '([A-Za-z_][A-Za-z0-9_]*)' is not defined")


def name_hint(result: CellResult, injected: Sequence[Injected], names: Collection[str]) -> str:
    """For a NameError: where the name really lives (``farm.fields``) or the closest existing name.

    Small models call an object's methods bare (``fields()`` for ``farm.fields()``)
    or misspell a variable; the error alone does not tell them which.
    """
    error = result.error
    match = _UNDEFINED.search(error.message) if error is not None and error.type == "NameError" else None
    if match is None:
        return ""
    missing = match.group(1)
    owners = [item.name for item in injected if item.kind == "object"
              and any(m.split("(")[0] == missing for m in item.methods)]
    if owners:
        where = ", ".join(f"`{o}`" for o in owners)
        return f"[hint] `{missing}` is a method of {where}: call `{owners[0]}.{missing}(...)`."
    close = difflib.get_close_matches(missing, list(names), n=1, cutoff=0.75)
    if close:
        return f"[hint] There is no `{missing}`; did you mean `{close[0]}`?"
    held = list(dict.fromkeys(n for n in names if not n.startswith("_")))
    if not held:
        return ""
    shown = ", ".join(f"`{n}`" for n in held[:8]) + (f" and {len(held) - 8} more" if len(held) > 8 else "")
    hint = f"[hint] There is no `{missing}`; the runtime holds {shown}."
    functions = [item for item in injected if item.kind == "function"]
    if functions:  # a model that invents `df` has usually not called the tool that gives the data
        tool = functions[0]
        call = "()" if re.fullmatch(r"\((?:[^=,()]*=[^,()]*(?:,\s*)?|\*\*?\w+(?:,\s*)?)*\)",
                                    tool.signature.split(" -> ")[0]) else "(...)"
        hint += f" To use what `{tool.name}` returns, call it: `{missing} = {tool.name}{call}`."
    return hint



def stuck_note() -> str:
    """The observation that ends a chat whose model sent a refused block yet again."""
    return ("[stopped] You sent the same block again after being told it would not run. "
            "The chat stops here; nothing of that block ran.")


def repeated_note(previous: CellResult) -> str:
    """The observation for a block identical to the previous one, which is not run again.

    Running it again would apply it twice (``n += 15``) or fail the same way.
    """
    if previous.ok:
        return (
            "[not run] This block is the same as your previous one, which already ran: running it "
            "again would apply it twice. If the task is done, reply in plain text without code; "
            "otherwise send different code."
        )
    error = previous.error.for_model().strip().splitlines()[-1] if previous.error else "an error"
    return (
        f"[not run] This block is the same as your previous one, which failed with: {error}\n"
        "It would fail again. Change the code."
    )


def missing_note(names: Sequence[str]) -> str:
    """The observation for an answer given while a variable the user asked for does not exist."""
    listed = ", ".join(f"`{n}`" for n in names)
    return (
        f"[not done] You were asked for {listed}, which does not exist in the runtime yet. "
        "Write the ```python block that creates it."
    )


ECHO_NOTE = (
    "[not an answer] Your reply repeats the request instead of doing it. Do the work: write "
    "a ```python block."
)


NO_CODE_NOTE = (
    "[check] No code ran for this request, so nothing was looked up or changed in the runtime. "
    "If the request needs its data, objects or variables, write the ```python block now; "
    "otherwise send your answer again."
)


FAILED_NOTE = (
    "[not done] Every block you sent for this request failed, so nothing was done yet. "
    "Fix the error and send the corrected ```python block."
)


def is_echo(reply: str, request: str) -> bool:
    """True if ``reply`` is just the user's request said back, or an imagined next message.

    Small models fall into this with greedy decoding, and once in the history
    it feeds itself; it is visibly not an answer.
    """
    if STATE_HEADER in reply:
        return True
    said, asked = _words(reply), _words(request)
    return bool(asked) and said == asked


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


_NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def claims_unseen(reply: str, request: str, names: set[str]) -> bool:
    """Whether an answer given without running code may be about the runtime's data.

    True when the request names something the runtime holds, or the answer
    states a number the request did not contain (a value nobody computed).
    A greeting or a question about something else is neither, and is let through.
    """
    asked = set(_words(request).split())
    if any(name.lower() in asked for name in names):
        return True
    return bool(set(re.findall(r"\d+(?:\.\d+)?", reply)) - set(re.findall(r"\d+(?:\.\d+)?", request)))


def requested_names(text: str) -> list[str]:
    """Names the user wrote in backticks (`growth`): what they may expect to find in the runtime."""
    return list(dict.fromkeys(_NAME.findall(text)))


UNTERMINATED_NOTE = (
    "[not run] Your ```python block has no closing ``` fence, so nothing ran. Resend the complete block."
)


def not_run_note(reason: str) -> str:
    """The observation for a block the agent did not run (cancel, budget)."""
    return f"[not run] The chat stopped before this block ran ({reason}); nothing changed."


def interrupted_note() -> str:
    """The observation for a cell whose outcome the agent never learned."""
    return (
        "[interrupted] The chat stopped while this block ran; whether it changed anything "
        "is unknown. Check the variables before relying on them."
    )

