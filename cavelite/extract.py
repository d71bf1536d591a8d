"""Finding the code to run in a model's reply.

The rule the model is taught: one ```python block per step. The first complete
python block runs; later blocks do not (the model is told); a block that never
closes does not run (the model is told); a reply without a python block is the
final answer. Fences follow CommonMark: up to three spaces of indent, three or
more backticks, and a closing fence at least as long as the opening one with
nothing after it. A fence-like line inside a triple-quoted string belongs to the
string, so code such as ``doc = \"\"\"\\n```\\n\"\"\"`` survives.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass

_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,})[ \t]*(?P<info>[^`\n]*?)[ \t]*$")
_CLOSE = re.compile(r"^ {0,3}(?P<fence>`{3,})[ \t]*$")
_PYTHON = {"python", "python3", "py", "pycon"}


@dataclass(frozen=True)
class Extraction:
    """What a reply holds.

    ``code`` is the first complete python block (None if there is none).
    ``ignored_blocks`` counts python blocks after it, which do not run.
    ``unterminated`` is True when the first python block never closes.
    ``end`` is where the first block's closing fence ends in the reply (None
    without a fenced block): what a model writes after it was not run, and
    small models often go on to imagine the observation there.
    """

    code: str | None = None
    ignored_blocks: int = 0
    unterminated: bool = False
    end: int | None = None

    @property
    def is_final_answer(self) -> bool:
        """No code to run and nothing half-written: the model has answered."""
        return self.code is None and not self.unterminated


def extract_code(text: str) -> Extraction:
    """Return the first complete python block of ``text`` and what else was there.

    Small models often drop the language tag (a bare fence), the opening
    fence, or the fences altogether; a bare-fenced block, code that ends at a
    lone closing fence, or a whole reply, that parses as Python and does
    something (assigns, imports, calls...) counts as code. A reply that is just
    a name or a number (``North``, ``42``) stays an answer.
    """
    blocks, open_block, end = _scan(text)
    if not blocks:
        unopened = _unopened_block(text)
        if unopened is not None:
            return Extraction(unopened[0], 0, False, unopened[1])
        if not open_block and looks_like_code(text):
            return Extraction(text.strip("\n"), 0, False)
        return Extraction(None, 0, unterminated=open_block)
    return Extraction(blocks[0], len(blocks) - 1 + (1 if open_block else 0), False, end)


_ACTIONS = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Import, ast.ImportFrom, ast.For,
            ast.While, ast.If, ast.With, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
            ast.Try, ast.Delete)


def looks_like_code(text: str) -> bool:
    """True if ``text`` is valid Python with at least one statement that acts."""
    stripped = text.strip()
    if not stripped or "\n" not in stripped and " " not in stripped and "(" not in stripped:
        return False
    try:
        tree = ast.parse(stripped)
    except (SyntaxError, ValueError):
        return False
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and node.value is None:
            continue  # "Answer: 42" parses as an annotation; it is prose
        if isinstance(node, _ACTIONS):
            return True
        if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Call, ast.Await)):
            return True
    return False


class CodeWatcher:
    """Streaming twin of `extract_code`: feed deltas, learn when the first block closes.

    `feed` returns the code exactly once, as soon as the first python block's
    closing fence line is complete, so a UI can show "running..." before the
    model has finished talking. `extract_code` on the full text stays the
    authority on what runs.
    """

    def __init__(self) -> None:
        self._text = ""
        self._scanned_to = 0
        self._found = False

    def feed(self, delta: str) -> str | None:
        self._text += delta
        if self._found:
            return None
        end = self._text.rfind("\n")
        if end < self._scanned_to:
            return None
        new_lines = self._text[self._scanned_to : end]
        self._scanned_to = end + 1
        if "```" not in new_lines:
            return None
        blocks, _, _ = _scan(self._text[: end + 1])
        if blocks:
            self._found = True
            return blocks[0]
        return None


def _scan(text: str) -> tuple[list[str], bool, int | None]:
    """Split ``text`` into complete python blocks; say if one is left open, and where the first ends."""
    blocks: list[str] = []
    first_end: int | None = None
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        opening = _OPEN.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence = opening.group("fence")
        info = opening.group("info").split(" ")[0].lower()
        is_python = info in _PYTHON
        bare = info == ""
        body: list[str] = []
        i += 1
        closed = False
        while i < len(lines):
            closing = _CLOSE.match(lines[i])
            if closing and len(closing.group("fence")) >= len(fence):
                if not (is_python and _ends_inside_string("\n".join(body))):
                    closed = True
                    break
            body.append(lines[i])
            i += 1
        if not closed:
            return blocks, is_python or _has_python_fence(body), first_end
        if is_python or (bare and looks_like_code("\n".join(body))):
            blocks.append("\n".join(body))
            if first_end is None:
                first_end = sum(len(line) + 1 for line in lines[: i + 1]) - 1
        i += 1
    return blocks, False, first_end


def _unopened_block(text: str) -> tuple[str, int] | None:
    """Code that starts the reply and ends at a bare fence line, its opening fence forgotten."""
    offset = 0
    for line in text.split("\n"):
        if _CLOSE.match(line):
            prefix = text[:offset].strip("\n")
            return (prefix, offset + len(line)) if looks_like_code(prefix) else None
        offset += len(line) + 1
    return None


def _has_python_fence(lines: list[str]) -> bool:
    """An unclosed non-python fence may swallow a python block the model meant to send."""
    for line in lines:
        match = _OPEN.match(line)
        if match and match.group("info").split(" ")[0].lower() in _PYTHON:
            return True
    return False


def _ends_inside_string(code: str) -> bool:
    """True if ``code`` stops inside an unterminated triple-quoted string."""
    try:
        for _ in tokenize.generate_tokens(io.StringIO(code + "\n").readline):
            pass
    except tokenize.TokenError as exc:
        return "string" in str(exc.args[0]).lower()
    except SyntaxError as exc:  # the 3.12+ tokenizer reports it this way
        return "triple-quoted" in str(exc)
    return False
