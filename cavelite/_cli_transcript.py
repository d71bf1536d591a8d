"""``/transcript PATH``: the chat as it happened, both streams, as JSONL and Markdown.

The semantic stream is what was said (questions, the model's replies, its
answers, retries, stops); the runtime stream is what ran (each cell's code,
output, value, error and changed variables). A reply cut by Ctrl-C is kept
with what had streamed. JSONL is one record per line, for programs (the
cell records are those of ``run --json``); Markdown is for people.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cavelite._cli_records import cell_record, model_error_record, usage_record
from cavelite.events import (
    CellFinished,
    Event,
    ModelReplied,
    ModelRetrying,
    Stopped,
    TextDelta,
)

FORMATS = (".jsonl", ".md")


class Transcript:
    """Records a session's events; writes them out on demand."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._streamed: list[str] = []

    def _add(self, kind: str, **fields: Any) -> None:
        self.records.append({"type": kind, "time": round(time.time(), 3), **fields})

    def question(self, text: str) -> None:
        self._add("question", text=text)

    def note(self, text: str) -> None:
        """Something the host side did (a reset, a save) that explains what follows."""
        self._add("note", text=text)

    def on_event(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            self._streamed.append(event.text)
        elif isinstance(event, ModelRetrying):
            self._add("retry", step=event.step, attempt=event.attempt, max_retries=event.max_retries,
                      delay_s=event.delay_s, reason=event.reason, status=event.status)
        elif isinstance(event, ModelReplied):
            self._streamed.clear()
            self._add("model", step=event.step, text=event.text, usage=usage_record(event.usage),
                      wall_s=round(event.wall_s, 6))
        elif isinstance(event, CellFinished):
            self._add("cell", **cell_record(event.step, event.code, event.result),
                      observation=event.observation)
        elif isinstance(event, Stopped):
            if self._streamed:  # a reply cut by a cancel or an error: keep what was shown
                self._add("cut_reply", text="".join(self._streamed))
                self._streamed.clear()
            reply = event.reply
            self._add("stop", reason=reply.stop_reason.value, detail=reply.detail, steps=reply.steps,
                      usage=usage_record(reply.usage), wall_s=round(reply.wall_s, 6),
                      model_error=model_error_record(reply.error))

    def write(self, path: Path) -> list[Path]:
        """Write ``path`` by its extension (.jsonl or .md), or both beside it if it has neither."""
        suffix = path.suffix.lower()
        targets = [path] if suffix in FORMATS else [path.with_name(path.name + ext) for ext in FORMATS]
        for target in targets:
            if target.suffix.lower() == ".jsonl":
                text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in self.records)
            else:
                text = self.markdown()
            target.write_text(text, encoding="utf-8")
        return targets

    def markdown(self) -> str:
        out = ["# cavelite chat transcript\n"]
        for record in self.records:
            kind = record["type"]
            if kind == "question":
                out.append(f"## You\n\n{record['text']}\n")
            elif kind == "note":
                out.append(f"*{record['text']}*\n")
            elif kind == "model":
                out.append(f"### Model, step {record['step']} ({record['wall_s']:.2f} s, "
                           f"{record['usage']['total_tokens']:,} tokens)\n\n{record['text']}\n")
            elif kind == "cut_reply":
                out.append(f"### Model (cut)\n\n{record['text']}\n\n*(the reply was cut here)*\n")
            elif kind == "retry":
                out.append(f"*retried the model call after: {record['reason']}*\n")
            elif kind == "cell":
                out.append(_cell_markdown(record))
            elif kind == "stop":
                out.append(f"**{record['reason']}** · {record['steps']} step(s) · "
                           f"{record['usage']['total_tokens']:,} tokens · {record['wall_s']:.2f} s"
                           + (f" · {record['detail']}" if record["detail"] else "") + "\n")
        return "\n".join(out)


def _cell_markdown(record: dict[str, Any]) -> str:
    outcome = "ok" if record["ok"] else f"failed: {record['error']['kind']}" if record["error"] else "failed"
    parts = [f"**Cell** (step {record['step']}, {outcome}, {record['duration_s']:.3f} s)\n",
             _fence(record["code"], "python")]
    if record["stdout"]:
        parts.append("Output:\n\n" + _fence(record["stdout"].rstrip("\n"), "text"))
    if record["stderr"]:
        parts.append("Stderr:\n\n" + _fence(record["stderr"].rstrip("\n"), "text"))
    if record["value"] is not None:
        parts.append("Value:\n\n" + _fence(record["value"], "text"))
    if record["error"]:
        parts.append("Error:\n\n" + _fence(record["error"]["text"], "text"))
    if record["changed"]:
        parts.append("Changed: " + ", ".join(f"`{v['name']}: {v['type']}`" for v in record["changed"]) + "\n")
    return "\n".join(parts)


def _fence(text: str, info: str) -> str:
    """A fence longer than any backtick run inside, so model text cannot close it early."""
    ticks = "`" * max(3, _longest_run(text) + 1)
    return f"{ticks}{info}\n{text}\n{ticks}\n"


def _longest_run(text: str) -> int:
    best = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        best = max(best, run)
    return best
