"""Layer 1: policy rules checked on a cell's AST before it is compiled.

A `Policy` is a value: it is pickled to the worker, which checks each cell
against it before RestrictedPython compiles it, and consults it again at
run time (the guarded ``__import__`` and module attribute access). A
rejected cell never runs; its `Violation`s name the rule, the line, the
snippet and a hint, so that a model can correct itself.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import PolicyError
from .violation import Violation

DEFAULT_ALLOWED_IMPORTS = frozenset(
    """math cmath statistics random decimal fractions numbers datetime time calendar zoneinfo
    json re string textwrap unicodedata difflib collections itertools functools operator
    heapq bisect array copy enum dataclasses typing types_safe abc contextlib uuid hashlib
    hmac base64 binascii pprint reprlib io asyncio warnings csv numpy pandas matplotlib""".split()
) - {"types_safe"}

# Submodules refused even when their parent is allowed: they compile or load
# native code, run files, or drive the interpreter; pandas.core.computation is
# pandas' expression engine (it evaluates text with unguarded attribute access).
# Private submodules (a part starting with "_", numpy._core) are refused as well.
DEFAULT_DENIED_IMPORTS = frozenset(
    """numpy.ctypeslib numpy.f2py numpy.distutils numpy.testing numpy.lib.npyio
    pandas.core.computation
    pandas.io.pickle pandas.io.clipboard pandas.io.clipboards pandas.util._tester
    asyncio.subprocess asyncio.unix_events asyncio.windows_events asyncio.base_subprocess
    numpy.lib.format pandas.compat.pickle_compat pandas.io.pytables pandas.io.parquet
    pandas.io.feather_format pandas.io.orc pandas.io.sql pandas.io.spss pandas.io.stata
    pandas.io.sas pandas.io.formats.style pandas.plotting
    matplotlib.backends matplotlib.backend_bases matplotlib.backend_managers
    matplotlib.backend_tools matplotlib.animation matplotlib.testing matplotlib.tests
    matplotlib.sphinxext matplotlib.texmanager matplotlib.dviread matplotlib.cbook
    matplotlib.pylab matplotlib.rcsetup""".split()
)
# matplotlib: its backends import modules by name, open windows or write files (PDF
# pages, animations through ffmpeg); texmanager and dviread run LaTeX; cbook opens
# files by path; rcsetup holds the validators the cave narrows (see figure_doors).

# Module attributes refused at run time: the file, process and network doors
# of otherwise useful modules.
DEFAULT_DENIED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "io": frozenset(["open", "open_code", "FileIO", "BufferedReader", "BufferedWriter",
                     "BufferedRandom", "TextIOWrapper", "BufferedRWPair"]),
    "asyncio": frozenset(["create_subprocess_exec", "create_subprocess_shell", "subprocess",
                          "open_connection", "start_server", "open_unix_connection",
                          "start_unix_server", "events", "base_events", "unix_events",
                          "get_event_loop", "new_event_loop", "get_running_loop",
                          "set_event_loop", "set_event_loop_policy", "get_event_loop_policy",
                          # Event loop classes: a subclass would reach their private
                          # transports; the loop a cell runs on belongs to the runtime.
                          "AbstractEventLoop", "BaseEventLoop", "SelectorEventLoop",
                          "AbstractEventLoopPolicy", "DefaultEventLoopPolicy", "Runner",
                          # Threads: the worker forks its checkpoint and unpickles between
                          # cells; a cell's thread would run on through both (and a
                          # checkpoint that takes over has no thread to finish its work).
                          "to_thread", "threads"]),
    "string": frozenset(["Formatter"]),
    "numpy": frozenset(["load", "save", "savez", "savez_compressed", "fromfile", "memmap",
                        "loadtxt", "savetxt", "genfromtxt", "tofile", "ctypeslib", "f2py",
                        "testing", "DataSource", "info", "seterrcall"]),
    # add_newdoc imports any module by name and writes C-level docstrings; info imports
    # the "toplevel" it is given; seterrcall makes numpy call cell code wherever a
    # floating-point error happens, the runtime's own work included.
    "numpy.lib": frozenset(["add_newdoc", "add_docstring"]),
    # Readers backed by native code open files without the audit hook seeing it;
    # eval would evaluate text with its own (unguarded) attribute access.
    "pandas": frozenset(["read_pickle", "to_pickle", "read_csv_file", "read_parquet",
                         "read_feather", "read_orc", "read_hdf", "HDFStore", "read_spss",
                         "read_sas", "read_stata", "read_sql", "read_sql_query",
                         "read_sql_table", "eval", "read_clipboard"]),
    "random": frozenset(["SystemRandom"]),
    # Registering an accessor or dtype writes onto pandas' own classes and registries.
    "pandas.api.extensions": frozenset(["register_dataframe_accessor", "register_series_accessor",
                                        "register_index_accessor", "register_extension_dtype"]),
    # global_enum copies members into the module the enum names (json.dumps = a member).
    "enum": frozenset(["global_enum"]),
    # as_strided/DummyArray build arrays over any address (unchecked strides or a raw
    # __array_interface__): memory reads and writes anywhere in the worker.
    "numpy.lib.stride_tricks": frozenset(["as_strided", "DummyArray"]),
    "dataclasses": frozenset(["make_dataclass"]),
    # matplotlib's file doors (figures reach the user as PNG without them): readers and
    # writers by path, the font scan (it runs fc-list), the config and cache paths.
    "matplotlib": frozenset(["rc_file", "rc_params_from_file", "rc_params", "get_cachedir",
                             "get_configdir", "matplotlib_fname", "validate_backend"]),
    "matplotlib.pyplot": frozenset(["imread", "imsave", "install_repl_displayhook",
                                    "uninstall_repl_displayhook", "ginput",
                                    "waitforbuttonpress"]),
    "matplotlib.image": frozenset(["imread", "imsave", "thumbnail"]),
    "matplotlib.font_manager": frozenset(["findSystemFonts", "get_fontconfig_fonts", "json_dump",
                                          "json_load", "list_fonts", "win32FontDirectory"]),
    "matplotlib.style": frozenset(["read_style_directory", "reload_library"]),
}

DEFAULT_DENIED_FUNCTIONS = frozenset(
    """eval exec compile open input breakpoint globals locals vars __import__ memoryview
    exit quit help importlib.import_module numpy.load pandas.read_pickle""".split()
)

_FIGURE_HINT = ("figures reach the user by themselves: plt.show(), or leave the figure open "
                "at the end of the cell; fig.savefig(io.BytesIO(), format='png') gives the bytes")

_HINTS = {
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


def attribute_hint(module: str, name: str) -> str:
    """What to use instead of a refused module attribute."""
    full = f"{module}.{name}"
    if full in _HINTS:
        return _HINTS[full]
    if name.startswith(("read_", "load", "save", "to_", "from", "im", "rc_")) or name in (
            "memmap", "HDFStore", "thumbnail"):
        return "files are not reachable from a cell; ask the user to inject the data"
    return ""


@dataclass(frozen=True)
class ImportRule:
    """Imports must name an allowed module (or a submodule of one), and not a denied one."""

    allowed: frozenset[str] = DEFAULT_ALLOWED_IMPORTS
    denied: frozenset[str] = DEFAULT_DENIED_IMPORTS
    name: str = "import"

    def allows(self, module: str) -> bool:
        """Whether a cell may import ``module`` (allowed itself or by a parent, and not denied)."""
        parts = module.split(".")
        if any(part.startswith("_") for part in parts):
            return False  # private modules (numpy._core): their public names are internals
        prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
        if prefixes & self.denied:
            return False
        return bool(prefixes & self.allowed)


@dataclass(frozen=True)
class FunctionRule:
    """Calls to these functions are refused, by name, alias or known module path."""

    denied: frozenset[str] = DEFAULT_DENIED_FUNCTIONS
    name: str = "function"


@dataclass(frozen=True)
class AttributeRule:
    """These attribute names may not appear in a cell at all."""

    denied: frozenset[str] = frozenset(
        """__subclasses__ __globals__ __builtins__ __code__ __closure__ __func__ __self__
        __dict__ __bases__ __base__ __mro__ __getattribute__ __reduce__ __reduce_ex__
        __loader__ __spec__ __import__ gi_frame gi_code cr_frame cr_code ag_frame ag_code
        tb_frame tb_next f_back f_globals f_locals f_builtins f_code co_code
        get_stack print_stack subprocess_exec subprocess_shell run_in_executor
        set_default_executor create_connection create_server create_unix_connection
        create_unix_server create_datagram_endpoint add_reader add_writer sock_connect
        to_pickle to_parquet to_feather to_hdf to_orc to_sql to_stata as_strided get_loop""".split()
    )
    name: str = "attribute"


@dataclass(frozen=True)
class RegexRule:
    """Refuse cells whose source matches a pattern (for site-specific bans)."""

    pattern: str
    message: str
    hint: str = ""
    name: str = "regex"


@dataclass(frozen=True)
class Policy:
    """What cells may do. ``Policy.default()`` is safe; derive variants with the builders."""

    imports: ImportRule = field(default_factory=ImportRule)
    functions: FunctionRule = field(default_factory=FunctionRule)
    attributes: AttributeRule = field(default_factory=AttributeRule)
    regexes: tuple[RegexRule, ...] = ()
    denied_module_attributes: tuple[tuple[str, frozenset[str]], ...] = tuple(
        DEFAULT_DENIED_ATTRIBUTES.items()
    )
    readable_dirs: tuple[str, ...] = ()

    @classmethod
    def default(cls) -> Policy:
        """The safe default: the allowed modules, denied functions and attributes above."""
        return cls()

    # --- builders (each returns a new Policy) -------------------------------------

    def allow_imports(self, *modules: str) -> Policy:
        """A copy that also allows importing ``modules`` (and their submodules)."""
        imports = replace(
            self.imports,
            allowed=self.imports.allowed | frozenset(modules),
            denied=frozenset(d for d in self.imports.denied if d not in modules),
        )
        return replace(self, imports=imports)

    def deny_imports(self, *modules: str) -> Policy:
        """A copy that refuses importing ``modules`` (and their submodules)."""
        return replace(self, imports=replace(self.imports, denied=self.imports.denied | set(modules)))

    def deny_functions(self, *names: str) -> Policy:
        """A copy that refuses calls to these functions (``"eval"``, ``"numpy.load"``)."""
        return replace(self, functions=replace(self.functions, denied=self.functions.denied | set(names)))

    def allow_functions(self, *names: str) -> Policy:
        """A copy that no longer refuses calls to these functions by name."""
        return replace(self, functions=replace(self.functions, denied=self.functions.denied - set(names)))

    def deny_attributes(self, *names: str) -> Policy:
        """A copy that refuses these attribute names anywhere in a cell."""
        return replace(self, attributes=replace(self.attributes, denied=self.attributes.denied | set(names)))

    def add_regex(self, pattern: str, message: str, hint: str = "") -> Policy:
        """A copy that refuses cells whose source matches ``pattern`` (with ``message`` and a hint).

        Raises `PolicyError` if ``pattern`` is not a valid regular expression.
        """
        try:
            re.compile(pattern)  # fail here, not in the worker
        except re.error as exc:
            raise PolicyError(f"invalid regex {pattern!r}: {exc}") from None
        return replace(self, regexes=(*self.regexes, RegexRule(pattern, message, hint)))

    def allow_read_dirs(self, *dirs: str) -> Policy:
        """Let allowed libraries (pd.read_csv, np.load) read files under these directories."""
        import os

        return replace(self, readable_dirs=(*self.readable_dirs, *(os.path.realpath(d) for d in dirs)))

    # --- checks -------------------------------------------------------------------

    def module_attribute_denied(self, module: str, name: str) -> bool:
        """Whether ``module.name`` is one of the refused module attributes."""
        for mod, names in self.denied_module_attributes:
            if mod == module and name in names:
                return True
        return False

    def check(self, tree: ast.AST, source: str) -> list[Violation]:
        """All violations in a parsed cell, in source order."""
        found = _Checker(self, source).run(tree)
        for rule in self.regexes:
            for match in re.finditer(rule.pattern, source, flags=re.MULTILINE):
                line = source.count("\n", 0, match.start()) + 1
                col = match.start() - (source.rfind("\n", 0, match.start()) + 1)
                found.append(Violation(rule.name, rule.message, line, col,
                                       _line(source, line), rule.hint))
        return sorted(found, key=lambda v: (v.line, v.col))


def _tokens(source: str) -> Any:
    try:
        import asttokens
    except ImportError:  # positions fall back to line numbers
        return None
    try:
        return asttokens.ASTText(source)
    except Exception:
        return None


def _line(source: str, lineno: int) -> str:
    lines = source.splitlines()
    return lines[lineno - 1] if 0 < lineno <= len(lines) else ""


class _Checker(ast.NodeVisitor):
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
            text = text or _line(self.source, line)
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
                            f"'{full}' is not available in the cave", _HINTS.get(full, ""))
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
                        _HINTS.get(short, ""))

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


def merge_violations(*groups: Iterable[Violation]) -> list[Violation]:
    seen: dict[tuple[int, int, str], Violation] = {}
    for group in groups:
        for v in group:
            seen.setdefault((v.line, v.col, v.message), v)
    return sorted(seen.values(), key=lambda v: (v.line, v.col))
