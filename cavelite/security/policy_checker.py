"""Layer 1: the walk over a cell's AST that finds what a `Policy` refuses.

Kept apart from the policy itself: `Policy` is the value users build and the
worker receives; this is the visitor that reads a cell with it, tracking
import aliases (``np`` -> ``numpy``) and simple aliases (``f = eval``) so a
renamed refusal is still refused, and placing each violation with asttokens.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

from .violation import Violation

if TYPE_CHECKING:
    from .policy import Policy


_FIGURE_HINT = ("figures reach the user by themselves: plt.show(), or leave the figure open "
                "at the end of the cell; fig.savefig(io.BytesIO(), format='png') gives the bytes")
# What to do instead, for a refused call or import (shown to the model).
HINTS: dict[str, str] = {
    "open": "files are not reachable from a cell; ask the user to inject the data instead",
    "eval": "write the expression directly as code",
    "exec": "write the code directly in the cell",
    "compile": "write the code directly in the cell",
    "globals": "refer to variables by name; rt.variables() lists them",
    "locals": "refer to variables by name",
    "vars": "use the object's public attributes or dataclasses.asdict()",
    "input": "there is no user at a terminal; use the data you were given",
    "__import__": "use an import statement for an allowed module",
    "importlib.import_module": "use an import statement for an allowed module",
    "numpy.load": "files are not reachable; ask the user to inject the array",
    "pandas.read_pickle": "pickles can run code; ask the user to inject the DataFrame",
    "pandas.eval": "write the expression with operators: df.a + df.b, df[df.a > 1]",
    "numpy.lib.stride_tricks.as_strided": "use numpy.lib.stride_tricks.sliding_window_view",
    "dataclasses.make_dataclass": "write a @dataclass class statement",
    "matplotlib.pyplot.imsave": _FIGURE_HINT,
    "matplotlib.image.imsave": _FIGURE_HINT,
    "matplotlib.pyplot.ginput": "there is no user at a screen; figures are shown as PNG",
    "matplotlib.pyplot.waitforbuttonpress": "there is no user at a screen; figures are shown as PNG",
}


def _tokens(source: str) -> Any:
    try:
        import asttokens
    except ImportError:  # positions fall back to line numbers
        return None
    try:
        return asttokens.ASTText(source)
    except Exception:
        return None


def source_line(source: str, lineno: int) -> str:
    lines = source.splitlines()
    return lines[lineno - 1] if 0 < lineno <= len(lines) else ""


class PolicyChecker(ast.NodeVisitor):
    """Walks one cell, tracking import aliases (np -> numpy) and simple aliases (f = eval)."""

    def __init__(self, policy: Policy, source: str):
        self.policy = policy
        self.source = source
        self.found: list[Violation] = []
        self.nodes: list[ast.AST] = []
        self.aliases: dict[str, str] = {}  # local name -> qualified name

    def run(self, tree: ast.AST) -> list[Violation]:
        self.visit(tree)
        return self.locate()

    def report(self, node: ast.AST, rule: str, message: str, hint: str = "") -> None:
        self.found.append(Violation(rule, message, getattr(node, "lineno", 1), 0, "", hint))
        self.nodes.append(node)

    def locate(self) -> list[Violation]:
        """Exact columns and snippets, computed only when a cell is refused.

        ast's col_offset counts UTF-8 bytes; asttokens gives character offsets, so
        a column is right on lines with non-ASCII text too.
        """
        if not self.found:
            return self.found
        tokens = _tokens(self.source)
        located = []
        for violation, node in zip(self.found, self.nodes, strict=True):
            line, col, text = violation.line, 0, ""
            if tokens is not None and hasattr(node, "lineno"):
                try:
                    start, end = tokens.get_text_positions(node, padded=False)
                    line, col = start
                    text = tokens.get_text(node)
                except Exception:
                    text = ""
            text = text or source_line(self.source, line)
            text = text if len(text) <= 200 else text[:197] + "..."
            located.append(Violation(violation.rule, violation.message, line, col, text,
                                     violation.hint))
        return located

    def allowed_hint(self) -> str:
        mods = sorted(m for m in self.policy.imports.allowed if "." not in m)
        return "allowed modules: " + ", ".join(mods)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            parts = alias.name.split(".")
            through_denied = any(self.policy.module_attribute_denied(".".join(parts[:i]), parts[i])
                                 for i in range(1, len(parts)))
            if not self.policy.imports.allows(alias.name) or through_denied:
                self.report(node, self.policy.imports.name, f"import of '{alias.name}' is not allowed",
                            self.allowed_hint())
            local = alias.asname or alias.name.split(".")[0]
            self.aliases[local] = alias.name if alias.asname else alias.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.report(node, self.policy.imports.name, "relative imports are not allowed",
                        self.allowed_hint())
            return
        if not self.policy.imports.allows(module):
            self.report(node, self.policy.imports.name, f"import from '{module}' is not allowed",
                        self.allowed_hint())
            return
        for alias in node.names:
            full = f"{module}.{alias.name}"
            if full in self.policy.imports.denied:
                self.report(node, self.policy.imports.name, f"import of '{full}' is not allowed",
                            self.allowed_hint())
            if self.policy.module_attribute_denied(module, alias.name):
                self.report(node, self.policy.imports.name,
                            f"'{full}' is not available in the cave", HINTS.get(full, ""))
            self.aliases[alias.asname or alias.name] = full

    def qualified(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualified(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def check_function(self, node: ast.AST, target: ast.AST) -> None:
        name = self.qualified(target)
        if name is None:
            return
        denied = self.policy.functions.denied
        if name in denied or (name.startswith("builtins.") and name[9:] in denied):
            short = name.removeprefix("builtins.")
            self.report(node, self.policy.functions.name, f"calling '{short}' is not allowed",
                        HINTS.get(short, ""))

    def visit_Call(self, node: ast.Call) -> None:
        self.check_function(node, node.func)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        # f = eval  /  loader = np.load: remember the alias, report the escape.
        name = self.qualified(node.value) if isinstance(node.value, (ast.Name, ast.Attribute)) else None
        if name and name in self.policy.functions.denied:
            self.check_function(node, node.value)
        for target in node.targets:
            if isinstance(target, ast.Name):
                if name and name in self.policy.functions.denied:
                    self.aliases[target.id] = name
                else:
                    self.aliases.pop(target.id, None)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in self.policy.attributes.denied:
            self.report(node, self.policy.attributes.name,
                        f"attribute '{node.attr}' is not allowed", _attribute_name_hint(node.attr))
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in ("__builtins__", "__import__", "__loader__", "__spec__"):
            self.report(node, self.policy.attributes.name, f"name '{node.id}' is not allowed",
                        "interpreter internals are off limits")


def _attribute_name_hint(name: str) -> str:
    if name == "as_strided":
        return "use numpy.lib.stride_tricks.sliding_window_view"
    if name.startswith("to_"):
        return "files are not reachable from a cell; keep the data in a variable (or to_csv() "\
               "without a path returns the text)"
    if name.startswith(("get_stack", "print_stack")):
        return "frames are off limits; let the exception's message and traceback speak"
    if name == "get_loop":
        return "the event loop belongs to the runtime; use await, asyncio.gather and create_task"
    if name.startswith(("subprocess", "create_", "sock_", "add_", "run_in", "set_default")):
        return "processes, sockets and threads are off limits in the cave"
    return "interpreter internals are off limits; use public APIs"
