"""The public surface is pinned: changing it is a decision, not an accident.

For each public package, ``__all__`` must equal the pinned list below, and
every public name actually reachable in the package (not starting with an
underscore, not a submodule) must be in ``__all__``: a helper that leaks
into the namespace fails the test as surely as a name that disappears.
"""

from __future__ import annotations

import importlib
import pathlib
import types

import pytest

import cavelite

PINNED = {
    "cavelite": [
        "DEFAULT", "AgentClosedError", "CaveLite", "CaveRuntimeError", "CaveUsageError",
        "CaveliteError", "CellError", "CellFinished", "CellRecord", "CellResult", "ClosedError",
        "CodeExtracted", "Event", "Figure", "FinalAnswer", "Injected", "ModelError", "ModelReplied",
        "ModelRetrying",
        "Policy",
        "PolicyError", "PolicyViolated", "ProtocolError", "Reply", "RequestTimeoutError", "Runtime",
        "RuntimeClosedError", "Snapshot", "StepStats", "StopReason", "Stopped", "TextDelta",
        "TransferError", "UnpicklableValueError", "UntrustedTypeError", "Usage", "VariableInfo",
        "VariableNotFoundError", "Violation", "WorkerDiedError",
    ],
    "cavelite.models": ["AnthropicModel", "Image", "Message", "Model", "ModelReply", "OpenAIModel",
                        "RetryNotice", "ScriptedModel"],
    "cavelite.security": ["AttributeRule", "FunctionRule", "ImportRule", "Policy", "RegexRule",
                          "Violation"],
    "cavelite.cluster": ["ClusterFullError", "ClusterRuntime", "DirectoryStore", "NotDurableError",
                         "ObjectStore", "SessionLostError", "Sessions", "SnapshotStore", "connect"],
    "cavelite.runtime": ["DEFAULT", "CellError", "CellResult", "Figure", "Injected", "Runtime", "Snapshot",
                         "VariableInfo", "Violation"],
}


def _public_names(module: types.ModuleType) -> set[str]:
    names = set(dir(module))
    return {n for n in names if not n.startswith("_")
            and not isinstance(getattr(module, n), types.ModuleType)}


@pytest.mark.parametrize("package", list(PINNED))
def test_all_is_pinned(package: str) -> None:
    assert sorted(importlib.import_module(package).__all__) == sorted(PINNED[package])


@pytest.mark.parametrize("package", list(PINNED))
def test_every_public_name_is_in_all(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:  # loads the lazy names too
        getattr(module, name)
    assert _public_names(module) == set(module.__all__)


def test_the_check_sees_a_leaked_name() -> None:
    fake = types.ModuleType("fake")
    fake.__all__ = ["Public"]
    fake.Public, fake.helper = object(), object()
    assert _public_names(fake) != set(fake.__all__)


def test_errors_share_one_root() -> None:
    for name in cavelite.__all__:
        obj = getattr(cavelite, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, cavelite.CaveliteError), name


def test_package_is_typed() -> None:
    assert (pathlib.Path(cavelite.__file__).parent / "py.typed").exists()
