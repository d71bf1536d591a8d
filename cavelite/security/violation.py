"""`Violation`: one policy rule a cell broke, as the model and the user read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    """One policy rule broken by a cell, with where and how to fix it."""

    rule: str
    message: str
    line: int
    col: int
    snippet: str
    hint: str = ""

    def for_model(self) -> str:
        """The violation as a model reads it: line, message, rule, snippet and hint."""
        text = f"line {self.line}: {self.message} [{self.rule}]\n    {self.snippet.strip()}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text
