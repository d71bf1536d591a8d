"""Every ```python block in README.md and docs/*.md runs, offline.

Blocks of one file run in order in one namespace (a guide builds on its
earlier samples), in a scratch working directory. A block preceded by
``<!-- no-test: reason -->`` is skipped with that reason: only for samples
that need a real provider key. Shell lines starting with ``cavelite`` must
parse with the real argument parser, so the documented commands exist.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from cavelite.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

# CommonMark: a backtick fence's info string holds no backtick (so ```` ```python ```` is inline code).
_FENCE = re.compile(
    r"^ {0,3}(?:(?P<b>`{3,})[ \t]*(?P<binfo>[^`\s]*)[^`]*|(?P<t>~{3,})[ \t]*(?P<tinfo>\S*).*)$"
)
_NO_TEST = re.compile(r"<!--\s*no-test:\s*(?P<reason>.*?)\s*-->")

# Blocks other sessions own that cannot run offline yet: (file, block number) -> why.
# xfail(strict=True): once the owner fixes or marks the block, this entry must go.
KNOWN_BROKEN: dict[tuple[str, int], str] = {}


@dataclass(frozen=True)
class Block:
    file: Path
    number: int  # 1-based among the file's python blocks
    line: int  # where the code starts in the file
    code: str
    skip_reason: str | None

    @property
    def id(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> list[tuple[str, int, str, str | None]]:
    """(info, first code line, code, no-test reason) for each fenced block of a markdown file."""
    lines = path.read_text().splitlines()
    found = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence = match["b"] or match["t"]
        info = (match["binfo"] if match["b"] else match["tinfo"]).lower()
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = _NO_TEST.search(previous)
        body: list[str] = []
        i += 1
        start = i + 1  # 1-based number of the first code line
        while i < len(lines) and not (lines[i].strip().startswith(fence[0] * len(fence))
                                       and not lines[i].strip().strip(fence[0])):
            body.append(lines[i])
            i += 1
        found.append((info, start, "\n".join(body) + "\n", marker["reason"] if marker else None))
        i += 1
    return found


def python_blocks() -> list[Block]:
    blocks = []
    for path in DOC_FILES:
        number = 0
        for info, line, code, reason in fenced_blocks(path):
            if info in ("python", "py", "python3"):
                number += 1
                blocks.append(Block(path, number, line, code, reason))
    return blocks


BLOCKS = python_blocks()
_modules: dict[Path, types.ModuleType] = {}


def _params() -> list[object]:
    params = []
    for block in BLOCKS:
        marks = []
        key = (str(block.file.relative_to(ROOT)), block.number)
        if key in KNOWN_BROKEN:
            marks.append(pytest.mark.xfail(reason=KNOWN_BROKEN[key], strict=True))
        params.append(pytest.param(block, id=block.id, marks=marks))
    return params


@pytest.fixture(scope="module", autouse=True)
def _close_what_samples_left_open():
    """A sample may leave a runtime open, as a reader's snippet would; close it after the file."""
    yield
    from cavelite import CaveLite, Runtime

    for module in _modules.values():
        for value in list(vars(module).values()):
            if isinstance(value, CaveLite | Runtime):
                value.close()
        sys.modules.pop(module.__name__, None)
    _modules.clear()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs")


@pytest.mark.parametrize("block", _params())
def test_python_block_runs(block: Block, scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if block.skip_reason is not None:
        assert block.skip_reason, f"{block.id}: a no-test marker needs a reason"
        pytest.skip(f"no-test: {block.skip_reason}")
    module = _modules.get(block.file)
    if module is None:
        # A real module, so classes defined in a sample work with dataclasses and pickle.
        module = types.ModuleType(f"_docs_{block.file.stem}")
        _modules[block.file] = sys.modules[module.__name__] = module
    monkeypatch.chdir(scratch)
    code = compile(block.code, f"{block.id}", "exec")
    with contextlib.redirect_stdout(io.StringIO()):
        exec(code, module.__dict__)


def test_every_doc_file_is_scanned() -> None:
    """New markdown under docs/ (or the README) cannot slip past this test."""
    on_disk = {ROOT / "README.md", *(ROOT / "docs").rglob("*.md")}
    assert set(DOC_FILES) == on_disk
    assert (ROOT / "README.md").is_file()


def test_no_test_markers_are_rare_and_explained() -> None:
    skipped = [b for b in BLOCKS if b.skip_reason is not None]
    assert all(b.skip_reason for b in skipped), [b.id for b in skipped if not b.skip_reason]
    assert len(skipped) <= max(3, len(BLOCKS) // 5), [b.id for b in skipped]


def test_documented_commands_parse() -> None:
    parser = build_parser()
    commands = []
    for path in DOC_FILES:
        for info, line, code, _ in fenced_blocks(path):
            if info not in ("bash", "sh", "shell", "console", ""):
                continue
            for text in code.splitlines():
                text = text.strip().removeprefix("$ ")
                words = shlex.split(text, comments=True) if text else []
                while words and "=" in words[0] and not words[0].startswith("-"):
                    words = words[1:]  # VAR=value prefixes
                if words[:1] == ["cavelite"] or words[:1] == [".venv/bin/cavelite"]:
                    commands.append((path.name, line, words[1:]))
    for name, line, argv in commands:
        if "--help" in argv or "-h" in argv or "--version" in argv:  # they print and exit 0
            continue
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{name}:{line}: `cavelite {' '.join(argv)}` does not parse (exit {exc.code})")


def test_there_is_something_to_test() -> None:
    assert len(BLOCKS) >= 10
    assert os.path.exists(ROOT / "docs" / "guide.md") and os.path.exists(ROOT / "docs" / "models.md")
