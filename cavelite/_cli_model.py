"""The model of the ``cavelite`` command: which one, checked early, and what to check when it fails.

The choice comes from flags and the environment (`pick_model`). A compatible
server that lists its models is asked once at start-up (`check_served`), so
a wrong ``--model`` fails in a second with the list instead of after the
first question; with no ``--model`` the one model such a server serves is
used. When a chat stops with a model error, `failure_hint` names what to
check for *that* cause: an unreachable server is not a rejected key, and
neither is a server that answered 200 with nothing in it.
"""

from __future__ import annotations

import os

from cavelite.errors import CaveliteError, ModelError
from cavelite.models import AnthropicModel, Model, OpenAIModel

DEFAULT_CLAUDE = "claude-sonnet-4-5"
DEFAULT_OPENAI = "default"  # llama.cpp and most local servers serve whatever is loaded


class ConfigError(CaveliteError):
    """No usable model configuration (no key, no server): the user must set something."""


def pick_model(model: str | None = None, base_url: str | None = None, *, retries: int = 4,
               required: bool = True, stream: bool = True, timeout: float | None = None) -> Model | None:
    """The model the flags and environment select; None (or `ConfigError`) when there is none.

    An explicit ``base_url`` wins, then ``ANTHROPIC_API_KEY``, then ``CAVELITE_BASE_URL``.
    ``timeout`` is the HTTP timeout of one call (the agent bounds the whole call too).
    """
    name = model or os.environ.get("CAVELITE_MODEL") or None
    url = base_url or None
    if url is None and not os.environ.get("ANTHROPIC_API_KEY"):
        url = os.environ.get("CAVELITE_BASE_URL") or None
    # The SDK's limit per HTTP request; the agent bounds each whole call by its call_timeout. At
    # least 10 s, so a tiny call timeout does not also fail the start-up model check.
    http_timeout = max(timeout, 10.0) if timeout else 600.0
    if url is not None:
        key = os.environ.get("CAVELITE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        return OpenAIModel(name or DEFAULT_OPENAI, base_url=url, api_key=key, max_retries=retries,
                           max_backoff_s=8.0, stream=stream, timeout=http_timeout)
    if os.environ.get("ANTHROPIC_API_KEY"):
        return AnthropicModel(name or DEFAULT_CLAUDE, max_retries=retries, max_backoff_s=8.0, stream=stream,
                              timeout=http_timeout)
    if required:
        raise ConfigError(
            "no model configured: set ANTHROPIC_API_KEY for Claude, or pass --base-url URL "
            "(or set CAVELITE_BASE_URL) for an OpenAI-compatible server such as llama.cpp"
        )
    return None


def name_given(flag: str | None) -> bool:
    """Did the user name the model (``--model`` or ``CAVELITE_MODEL``)?"""
    return bool(flag or os.environ.get("CAVELITE_MODEL"))


def check_served(model: Model, *, named: bool) -> None:
    """Ask a compatible server which models it serves; fail now if ours is not one of them.

    Unless the user ``named`` one, the server's only model is taken (several:
    the user must choose). A server that cannot be reached fails here too, before any
    question is asked. Servers without a model list are not checked.
    """
    if not isinstance(model, OpenAIModel) or not model.check_model:
        return
    try:
        listed = model.list_models()
        if listed and not named and model.name not in listed:
            if len(listed) > 1:
                raise ConfigError(f"the server at {model.base_url} serves {len(listed)} models "
                                  f"({', '.join(listed[:20])}); choose one with --model")
            model.name = listed[0]
        model.check_name(listed)  # unknown_model, with the list
    except ModelError as exc:
        raise ModelError(f"{exc}{failure_hint(exc, model)}", kind=exc.kind) from exc


def describe_model(model: Model) -> str:
    """One line naming the model and where it runs, for the chat's welcome and the demo."""
    if isinstance(model, OpenAIModel):
        mode = "" if model.stream else ", not streamed"
        return f"{model.name} at {model.base_url} (OpenAI-compatible{mode})"
    if isinstance(model, AnthropicModel):
        return f"Claude {model.name}" + (f" at {model.base_url}" if model.base_url else "")
    return model.name or type(model).__name__


def failure_hint(error: ModelError | None, model: Model) -> str:
    """`` (what to check)`` for a model failure, by its cause; empty when there is nothing to add."""
    compatible = isinstance(model, OpenAIModel)
    where = f"server: {model.base_url}; " if isinstance(model, OpenAIModel) else ""
    url_flag = "check --base-url / CAVELITE_BASE_URL" if compatible else "check ANTHROPIC_BASE_URL"
    key_var = "CAVELITE_API_KEY / OPENAI_API_KEY" if compatible else "ANTHROPIC_API_KEY"
    kind = error.kind if error is not None else "provider"
    status = error.status if error is not None else None
    if kind == "connection":
        hint = f"{where}is it running? {url_flag}"
    elif kind == "timeout":
        hint = "the model is too slow for the time limit: raise --call-timeout, or use a smaller model"
    elif kind == "empty_reply":
        hint = "the server answered but sent no text: check the model it loaded and its chat template"
    elif kind == "bad_stream":
        hint = "the reply stream was malformed: try --no-stream"
    elif kind == "unknown_model":
        hint = "choose one with --model"
    elif status in (401, 403):
        hint = f"the key was refused: check {key_var}"
    elif status == 404:
        hint = f"{where}check --model and the URL's path (it usually ends in /v1)"
    elif status is not None and (status == 429 or status >= 500):
        hint = "the server is busy or failing; it was retried: try again later or raise --retries"
    else:
        return ""
    return f" ({hint})"


def model_failure(detail: str, error: ModelError | None, model: Model) -> str:
    """A model_error stop in one line: what happened, then what to check."""
    return f"{detail}{failure_hint(error, model)}"
