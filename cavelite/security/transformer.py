"""RestrictedPython's transformer, adjusted to the code language models write.

RestrictedPython refuses much of what LLMs write (classes with dunder
methods, ``self._x``, annotated assignments, ``d[k] += 1``, ``nonlocal``,
``async``/``await``) and puts a Python-level guard call on every attribute
read, item read and unpacking, which costs 3-5x on data loops. Here:

- names that look like guards (``_x_``, ``__x__``) stay reserved, so no cell
  can shadow or read ``_getattr_``, ``__builtins__``, ``__import__``...;
  ``_`` and ``_private`` names are ordinary variables;
- attribute reads of ordinary public names compile to native access (modules
  are handed out as `ModuleView` objects that police their own attributes);
  underscore names, frame/code/generator internals and the few method
  names that perform attribute access themselves (``format``,
  ``format_map``, ``attrgetter``...) go through ``_getattr_``;
- attribute writes go through ``_write_``, which refuses modules, classes,
  functions and remote proxies; augmented assignment to attributes and items
  is allowed, with the same guard;
- item access and unpacking are native: nothing the threat model protects
  is reachable through ``[]`` without first passing a guarded name or
  attribute.
"""

from __future__ import annotations

import ast

from RestrictedPython.transformer import (
    INSPECT_ATTRIBUTES,
    RestrictingNodeTransformer,
    copy_locations,
)

# Dunder attributes a cell may read: names, docs and the operator methods
# models call explicitly (super().__init__(...), x.__len__()). Not here, and
# so refused: __class__-free walks (__base__, __bases__, __mro__,
# __subclasses__), __globals__, __code__, __closure__, __func__, __self__,
# __dict__, __builtins__, __getattribute__, __reduce__...
READABLE_DUNDERS = frozenset(
    """__name__ __qualname__ __doc__ __module__ __class__ __version__ __annotations__
    __init__ __new__ __init_subclass__ __post_init__ __repr__ __str__ __format__ __bytes__ __hash__ __bool__
    __eq__ __ne__ __lt__ __le__ __gt__ __ge__ __len__ __iter__ __next__ __reversed__
    __contains__ __getitem__ __setitem__ __delitem__ __missing__ __call__ __enter__ __exit__
    __aenter__ __aexit__ __aiter__ __anext__ __await__
    __add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ __mul__ __rmul__ __imul__
    __truediv__ __rtruediv__ __itruediv__ __floordiv__ __rfloordiv__ __mod__ __rmod__
    __pow__ __rpow__ __matmul__ __neg__ __pos__ __abs__ __invert__ __round__ __floor__
    __ceil__ __trunc__ __int__ __float__ __complex__ __index__ __and__ __or__ __xor__
    __lshift__ __rshift__ __copy__ __deepcopy__ __sizeof__ __length_hint__
    __dataclass_fields__ __match_args__ __slots__ __fspath__
    __cause__ __context__ __suppress_context__ __notes__ __members__""".split()
)

# Dunder methods a class body may define (on top of READABLE_DUNDERS).
DEFINABLE_DUNDERS = READABLE_DUNDERS | frozenset(
    """__del__ __set_name__ __class_getitem__ __getattr__ __setattr__
    __delattr__ __get__ __set__ __delete__ __getstate__ __setstate__ __array__""".split()
)

# Public method names that read attributes by name at run time: routed
# through _getattr_ so the guard can hand out a safe version or refuse.
SENSITIVE_ATTRIBUTES = frozenset(
    ["format", "format_map", "vformat", "get_field", "get_value", "attrgetter", "methodcaller",
     # DataFrame.eval/query parse strings and evaluate attribute access and calls with no
     # guard; refused for pandas objects (a remote db.query(...) stays fine).
     "eval", "query"]
)

# Dunder attributes a cell may assign outside a class body (obj.__doc__ = ...). Others
# would change what an object is (__class__), what module it claims to come from
# (__module__, which decides "made by a cell"), or what libraries generate from it
# (__dataclass_fields__, __annotations__, __slots__): define those in the class body.
ASSIGNABLE_DUNDERS = frozenset(
    """__doc__ __name__ __qualname__ __cause__ __context__ __suppress_context__
    __notes__""".split()
)

REFUSED_ATTRIBUTES = INSPECT_ATTRIBUTES | frozenset(
    ["f_code", "f_locals", "gi_frame", "cr_frame", "ag_frame", "tb_frame", "co_code"]
)


# Methods whose first argument is the class even without @classmethod.
_IMPLICIT_CLASS_METHODS = frozenset(["__new__", "__init_subclass__", "__class_getitem__"])

# Class methods wrapped by a guard (guards.py) so that dunder names never reach them.
_HOOKED_METHODS = {"__getattr__": "_cave_getattr_", "__getstate__": "_cave_getstate_"}


def is_reserved(name: str) -> bool:
    """Guard-shaped names (``_getattr_``, ``__builtins__``) belong to the runtime."""
    return len(name) > 1 and name.startswith("_") and name.endswith("_")


class CaveTransformer(RestrictingNodeTransformer):
    """The cave's policy transformer (see the module docstring for the why)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._class_depth = 0
        self._class_names: list[str] = []
        self._self_name: str | None = None

    # --- names ---------------------------------------------------------------

    def check_name(self, node, name, allow_magic_methods=False):  # type: ignore[no-untyped-def]
        if name is None or not is_reserved(name):
            return
        if allow_magic_methods and self._class_depth and name in DEFINABLE_DUNDERS:
            return
        self.error(
            node,
            f'"{name}" is a reserved name (names that start and end with "_" '
            "belong to the runtime)",
        )

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if isinstance(node.ctx, ast.Load) and node.id in ("__name__", "__doc__"):
            return node
        if isinstance(node.ctx, ast.Store) and self._class_depth and node.id in (
            "__slots__", "__match_args__", "__hash__", "__annotations__", "__doc__",
        ):
            return node
        self.check_name(node, node.id)
        return node

    def visit_Nonlocal(self, node: ast.Nonlocal) -> ast.AST:
        for name in node.names:
            self.check_name(node, name)
        return node

    def visit_Global(self, node: ast.Global) -> ast.AST:
        for name in node.names:
            self.check_name(node, name)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        return self.node_contents_visit(node)

    # --- attributes ------------------------------------------------------------

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        name = node.attr
        if name in REFUSED_ATTRIBUTES or name.endswith("__roles__"):
            self.error(node, f'"{name}" is an interpreter internal that cells may not access')
            return node
        dunder = name.startswith("__") and name.endswith("__")
        if dunder and name not in READABLE_DUNDERS:
            self.error(node, f'"{name}" is a protected attribute and cannot be accessed')
            return node
        if dunder and not isinstance(node.ctx, ast.Load) and name not in ASSIGNABLE_DUNDERS:
            self.error(node, f'"{name}" cannot be assigned from a cell (define it in the class '
                             "body instead)")
            return node
        if name.startswith("__") and not dunder and self._class_names:
            # Python mangles self.__x to self._Class__x; do it here because the
            # guarded form passes the name as a string, which is never mangled.
            name = node.attr = f"_{self._class_names[-1]}{name}"
        node = self.node_contents_visit(node)
        if (self._self_name and not dunder and isinstance(node.value, ast.Name)
                and node.value.id == self._self_name
                and (name.startswith("_") or not isinstance(node.ctx, ast.Load))):
            # self._x, self.x = v: the method checked on entry that self is cell-made,
            # which is all that _getattr_/_write_ would check for these.
            return node
        if isinstance(node.ctx, ast.Load):
            if not name.startswith("_") and name not in SENSITIVE_ATTRIBUTES:
                return node  # native access: the fast path
            new_node = ast.Call(
                func=ast.Name("_getattr_", ast.Load()),
                args=[node.value, ast.Constant(name)],
                keywords=[],
            )
            copy_locations(new_node, node)
            return new_node
        guard = "_write_private_" if name.startswith("_") else "_write_"
        new_value = ast.Call(func=ast.Name(guard, ast.Load()), args=[node.value], keywords=[])
        copy_locations(new_value, node.value)
        node.value = new_value
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        return self.node_contents_visit(node)

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        return self.node_contents_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        # x += 1 stays native; obj.attr += 1 evaluates _write_(obj) once and
        # then reads and writes the attribute on what the guard returned.
        return self.node_contents_visit(node)

    def guard_iter(self, node):  # type: ignore[no-untyped-def]
        node = self.node_contents_visit(node)
        new_iter = ast.Call(func=ast.Name("_getiter_", ast.Load()), args=[node.iter], keywords=[])
        copy_locations(new_iter, node.iter)
        node.iter = new_iter
        return node

    def visit_With(self, node: ast.With) -> ast.AST:
        return self.node_contents_visit(node)

    def visit_TryStar(self, node: ast.AST) -> ast.AST:
        # except* is ordinary control flow; its handlers' names are checked like except's.
        return self.node_contents_visit(node)

    # --- definitions -------------------------------------------------------------

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self.check_name(node, node.name)
        if any(keyword.arg == "metaclass" for keyword in node.keywords):
            self.error(node, 'The keyword argument "metaclass" is not allowed.')
        self._class_depth += 1
        self._class_names.append(node.name.lstrip("_"))
        try:
            node = self.node_contents_visit(node)
        finally:
            self._class_depth -= 1
            self._class_names.pop()
        # No metaclass rewrite (unlike RestrictedPython): a class made by a cell
        # is recognised by its __module__ == "__main__", so Enum & co. just work.
        for item in node.body:
            if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            hook = _HOOKED_METHODS.get(item.name)
            if hook is not None:
                # Libraries probe objects with getattr/copy for protocol dunders
                # (numpy's __array_interface__ takes a raw address): wrap the hooks
                # a cell may write so that they can never answer for a dunder.
                decorator = ast.Name(hook, ast.Load())
                copy_locations(decorator, item)
                item.decorator_list.append(decorator)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self.check_name(node, node.name, allow_magic_methods=True)
        self.check_function_argument_names(node)
        trusted_self = self._trusted_self(node) if self._class_depth else None
        depth, self._class_depth = self._class_depth, 0
        outer_self, self._self_name = self._self_name, trusted_self or self._self_name
        try:
            node = self.node_contents_visit(node)
        finally:
            self._class_depth = depth
            self._self_name = outer_self
        if trusted_self:
            # One check per call instead of one per attribute: a method whose
            # first argument is never rebound reads its own _private attributes
            # natively once that argument is known to be cell-made.
            is_classmethod = node.name in _IMPLICIT_CLASS_METHODS or any(
                isinstance(d, ast.Name) and d.id == "classmethod" for d in node.decorator_list)
            subject = ast.Name(trusted_self, ast.Load())
            if is_classmethod:
                check = ast.Expr(ast.Call(ast.Name("_check_self_", ast.Load()), [subject], []))
            else:  # a dict lookup keyed by the class: no Python-level call on the hot path
                check = ast.Expr(ast.Subscript(
                    ast.Name("_cell_types_", ast.Load()),
                    ast.Call(ast.Name("_type_", ast.Load()), [subject], []), ast.Load()))
            copy_locations(check, node.body[0])
            ast.copy_location(check.value, node.body[0])
            ast.fix_missing_locations(check)
            node.body.insert(0, check)
        return node

    def _trusted_self(self, node: ast.FunctionDef) -> str | None:
        """The first argument's name if the fast path for its attributes is safe and useful."""
        args = [*node.args.posonlyargs, *node.args.args]
        if not args or any(isinstance(d, ast.Name) and d.id == "staticmethod"
                           for d in node.decorator_list):
            return None
        name = args[0].arg
        uses_private = False
        for sub in ast.walk(ast.Module(body=node.body, type_ignores=[])):
            if isinstance(sub, ast.Name) and sub.id == name and not isinstance(sub.ctx, ast.Load):
                return None  # rebound: what it names later is unknown
            if isinstance(sub, ast.arg) and sub.arg == name:
                return None  # shadowed in a nested function or lambda
            if isinstance(sub, (ast.Global, ast.Nonlocal)) and name in sub.names:
                return None
            if isinstance(sub, ast.ExceptHandler) and sub.name == name:
                return None
            if isinstance(sub, (ast.MatchAs, ast.MatchStar)) and sub.name == name:
                return None
            if isinstance(sub, ast.alias) and (sub.asname or sub.name) == name:
                return None
            if (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
                    and sub.value.id == name and not sub.attr.endswith("__")
                    and (sub.attr.startswith("_") or not isinstance(sub.ctx, ast.Load))):
                uses_private = True  # self._x reads, or self.x = ... writes
        return name if uses_private else None

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        return self.visit_FunctionDef(node)  # type: ignore[arg-type]

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        self.check_function_argument_names(node)
        return self.node_contents_visit(node)

    def check_function_argument_names(self, node):  # type: ignore[no-untyped-def]
        args = node.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None:
                self.check_name(node, arg.arg)

    def visit_Await(self, node: ast.Await) -> ast.AST:
        return self.node_contents_visit(node)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> ast.AST:
        return self.node_contents_visit(node)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> ast.AST:
        return self.node_contents_visit(node)

    # --- match statements ------------------------------------------------------------

    def _visit_match_node(self, node: ast.AST) -> ast.AST:
        for field in ("name", "rest"):
            self.check_name(node, getattr(node, field, None))
        return self.node_contents_visit(node)

    visit_Match = visit_match_case = visit_MatchValue = visit_MatchSingleton = _visit_match_node
    visit_MatchSequence = visit_MatchMapping = visit_MatchClass = _visit_match_node
    visit_MatchStar = visit_MatchAs = visit_MatchOr = _visit_match_node
