"""The package's layers, read from the source: imports run agent -> runtime -> security.

Every import statement under ``cavelite/`` (including imports inside functions,
excluding ``if TYPE_CHECKING:`` blocks) is an arrow from one module to another.
The test fails on any arrow that runs the wrong way, on ``rich`` outside the
CLI, on a provider SDK outside ``cavelite/models/``, on the MCP SDK (and the
HTTP server under it) outside ``cavelite/mcp_server.py``, on opentelemetry
outside ``cavelite/telemetry.py``, on matplotlib outside the worker-side
figure modules (at module level only in the backend that matplotlib loads),
and on ``ray`` (or ``grpc``) or ``cavelite.cluster`` imported outside
``cavelite/cluster/``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cavelite"
PROVIDER_SDKS = {"anthropic", "openai", "httpx"}
# Optional extras, each confined to the modules that are its seam.
CONFINED = {
    "mcp": {"cavelite.mcp_server"}, "mcp_types": {"cavelite.mcp_server"},
    "starlette": {"cavelite.mcp_server"}, "uvicorn": {"cavelite.mcp_server"},
    "opentelemetry": {"cavelite.telemetry"},
    "matplotlib": {"cavelite.runtime.figures", "cavelite.security.figure_doors",
                   "cavelite.runtime.figure_backend"},
}
# matplotlib at module level: only the backend module, which only matplotlib itself loads.
MODULE_LEVEL_MATPLOTLIB = {"cavelite.runtime.figure_backend"}
CLUSTER_ONLY = {"ray", "grpc"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every runtime import in one file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            if module in ("cavelite", "cavelite.runtime", "cavelite.security", "cavelite.models"):
                # `from . import x` names submodules: each is an arrow of its own.
                found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def _layer(module: str) -> str:
    if module == "cavelite":
        return "root"
    if module == "cavelite.errors":
        return "errors"  # the exception tree: a leaf every layer may use
    for layer in ("security", "runtime", "models", "cluster"):
        if module == f"cavelite.{layer}" or module.startswith(f"cavelite.{layer}."):
            return layer
    return "agent"


# What each layer may import from the package (besides itself).
ALLOWED = {
    "security": {"cavelite.errors"},
    "runtime": {"cavelite.errors", "security"},
    "models": {"cavelite.errors", "cavelite.usage"},
    "cluster": {"cavelite.errors", "security", "runtime"},
}


def _violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _module_name(path)
        layer = _layer(source)
        for line, target in _imports(path):
            where = f"{path.relative_to(PACKAGE.parent)}:{line}: {source} imports {target}"
            top = target.split(".")[0]
            if top == "rich" and not (source == "cavelite.cli" or source.startswith("cavelite._cli")):
                problems.append(f"{where} (rich belongs to the CLI)")
            if top in PROVIDER_SDKS and layer != "models":
                problems.append(f"{where} (provider SDKs belong to cavelite.models)")
            if top in CONFINED and source not in CONFINED[top]:
                problems.append(f"{where} ({top} belongs to {', '.join(sorted(CONFINED[top]))})")
            if target == "cavelite.runtime.figure_backend":
                problems.append(f"{where} (the backend is loaded by matplotlib, by name, in the worker)")
            if top in CLUSTER_ONLY and layer != "cluster":
                problems.append(f"{where} (ray belongs to cavelite.cluster)")
            if _layer(target) == "cluster" and layer != "cluster":
                problems.append(f"{where} (only cavelite.cluster imports itself: "
                                "`import cavelite` never loads Ray)")
            if top != "cavelite" or layer in ("agent", "root", "errors"):
                continue
            target_layer = _layer(target)
            allowed = ALLOWED[layer]
            if target_layer == layer and target != "cavelite":
                continue
            if target in allowed or target_layer in allowed:
                continue
            problems.append(f"{where} (the {layer} layer may not import the {target_layer} layer)")
    return problems


def _module_level_imports(path: Path) -> list[tuple[int, str]]:
    """Imports that run when the module is imported (not inside a function or class)."""
    found: list[tuple[int, str]] = []
    todo = list(ast.parse(path.read_text(), str(path)).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            todo.extend(ast.iter_child_nodes(node))
    return found


def test_matplotlib_is_imported_at_module_level_only_by_the_backend() -> None:
    problems = [f"{path.relative_to(PACKAGE.parent)}:{line}"
                for path in sorted(PACKAGE.rglob("*.py"))
                for line, target in _module_level_imports(path)
                if target.split(".")[0] == "matplotlib"
                and _module_name(path) not in MODULE_LEVEL_MATPLOTLIB]
    assert not problems, problems
    backend = PACKAGE / "runtime" / "figure_backend.py"
    assert any(t.startswith("matplotlib") for _, t in _module_level_imports(backend))  # the check sees


def test_the_host_loads_no_optional_extra_until_it_is_used() -> None:
    """A host that makes an agent and a runtime loads neither matplotlib, mcp nor opentelemetry."""
    code = (
        "import sys\n"
        "import cavelite\n"
        "from cavelite import CaveLite, Runtime\n"
        "import cavelite.agent, cavelite.runtime.runtime, cavelite.telemetry, cavelite.cli\n"
        "print(sorted(m for m in ('matplotlib', 'mcp', 'opentelemetry', 'uvicorn') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout
    assert out.strip() == "[]"


def test_imports_run_one_way() -> None:
    problems = _violations()
    assert not problems, "\n".join(problems)


def test_the_checker_sees_a_wrong_arrow(tmp_path, monkeypatch) -> None:
    """The rule can fail: a security module importing the runtime is reported."""
    fake = tmp_path / "cavelite"
    (fake / "security").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "security" / "__init__.py").write_text("")
    (fake / "security" / "bad.py").write_text(
        "def f():\n    from ..runtime import results\n    import rich\n    import opentelemetry\n"
        "    return results\n"
    )
    (fake / "runtime").mkdir()
    (fake / "runtime" / "__init__.py").write_text("import ray\nfrom ..cluster import host\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    problems = _violations()
    assert any("cavelite.runtime" in p and "security layer" in p for p in problems), problems
    assert any("rich belongs to the CLI" in p for p in problems), problems
    assert any("opentelemetry belongs to cavelite.telemetry" in p for p in problems), problems
    assert any("ray belongs to cavelite.cluster" in p for p in problems), problems
    assert any("only cavelite.cluster imports itself" in p for p in problems), problems


def test_worker_side_imports_load_no_agent_or_model_code() -> None:
    """What a zygote and its workers import never pulls in the agent, events or models."""
    code = (
        "import sys\n"
        "import cavelite.runtime.zygote, cavelite.runtime.worker, cavelite.runtime.cell\n"
        "print(sorted(m for m in sys.modules if m.startswith('cavelite')))\n"
        "print(sorted(m for m in ('anthropic', 'openai', 'rich') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout.splitlines()
    loaded = eval(out[0])  # noqa: S307 - our own subprocess's repr
    assert not [m for m in loaded if _layer(m) in ("agent", "models")], loaded
    assert "cavelite.runtime.worker" in loaded  # the check looked at the right process
    assert eval(out[1]) == []  # noqa: S307


def test_importing_cavelite_loads_no_ray() -> None:
    """The agent, the runtime and a session load neither Ray nor gRPC (only cavelite.cluster does)."""
    code = (
        "import sys, cavelite\n"
        "cavelite.CaveLite, cavelite.Runtime, cavelite.Policy\n"
        "import cavelite.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'grpc')))\n"
        "print('cavelite.agent' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout.splitlines()
    assert out == ["[]", "True"], out
