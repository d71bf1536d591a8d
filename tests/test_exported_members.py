"""The public surface is pinned: changing it is a decision, not an accident."""

import cavelite
import cavelite.models
import cavelite.security


def test_cavelite_exports() -> None:
    assert sorted(cavelite.__all__) == sorted([
        "CaveLite", "CaveRuntimeError", "CaveUsageError", "CaveliteError", "CellError",
        "CellFinished", "CellRecord", "CellResult", "CodeExtracted", "Event", "FinalAnswer", "Injected",
        "ModelError", "ModelReplied", "ModelRetrying", "Policy", "PolicyError", "PolicyViolated",
        "ProtocolError",
        "Reply", "Runtime", "RuntimeClosedError", "Snapshot", "StepStats", "StopReason", "Stopped",
        "TextDelta",
        "TransferError", "UnpicklableValueError", "UntrustedTypeError", "Usage", "VariableInfo",
        "VariableNotFoundError", "Violation", "WorkerDiedError",
    ])
    for name in cavelite.__all__:
        assert getattr(cavelite, name) is not None


def test_models_exports() -> None:
    assert sorted(cavelite.models.__all__) == sorted(
        ["AnthropicModel", "Message", "Model", "ModelReply", "OpenAIModel", "RetryNotice",
         "ScriptedModel"]
    )


def test_security_exports() -> None:
    assert sorted(cavelite.security.__all__) == sorted(
        ["AttributeRule", "FunctionRule", "ImportRule", "Policy", "RegexRule", "Violation"]
    )


def test_errors_share_one_root() -> None:
    for name in cavelite.__all__:
        obj = getattr(cavelite, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, cavelite.CaveliteError), name


def test_package_is_typed() -> None:
    import pathlib

    assert (pathlib.Path(cavelite.__file__).parent / "py.typed").exists()
