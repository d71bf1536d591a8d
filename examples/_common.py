"""Shared by the examples: pick a real model when one is configured, else a script.

- ``ANTHROPIC_API_KEY`` set: Claude (``CAVELITE_MODEL``, default claude-sonnet-4-5).
- ``CAVELITE_BASE_URL`` set: an OpenAI-compatible endpoint (``CAVELITE_MODEL``,
  ``CAVELITE_API_KEY``), e.g. a local Ollama or vLLM server.
- neither: the example's own `ScriptedModel`, so it runs offline and in tests.
"""

from __future__ import annotations

import os

from cavelite import Reply
from cavelite.models import AnthropicModel, Model, OpenAIModel, ScriptedModel
from cavelite.models.scripted import Script


def pick_model(offline_script: Script) -> Model:
    if os.environ.get("ANTHROPIC_API_KEY"):
        return AnthropicModel(os.environ.get("CAVELITE_MODEL", "claude-sonnet-4-5"), temperature=0)
    if os.environ.get("CAVELITE_BASE_URL"):
        return OpenAIModel(
            os.environ.get("CAVELITE_MODEL", "qwen2.5-coder"),
            base_url=os.environ["CAVELITE_BASE_URL"],
            api_key=os.environ.get("CAVELITE_API_KEY"),
            temperature=0,
        )
    return ScriptedModel(offline_script)


def show(title: str, reply: Reply) -> None:
    """Print a reply the way a terminal user wants to read it."""
    usage = reply.usage
    print(f"\n== {title}")
    print(reply.text)
    print(
        f"-- {reply.stop_reason.value}: {reply.steps} model calls, {len(reply.cells)} cells, "
        f"{usage.total_tokens} tokens ({usage.cache_read_tokens} from cache), {reply.wall_s:.2f}s"
    )


def py(code: str) -> str:
    """A reply holding one python block (for offline scripts)."""
    return f"```python\n{code.strip()}\n```"
