"""The public `cavelite.security` API, exercised through `Runtime`."""

from __future__ import annotations

import pytest

from cavelite import Runtime
from cavelite.security import AttributeRule, FunctionRule, ImportRule, Policy, RegexRule, Violation


def _violations(rt: Runtime, code: str) -> list[Violation]:
    result = rt.execute(code)
    assert not result.ok
    assert result.error.kind == "policy", result.error
    return list(result.error.violations)


def test_import_violation_names_rule_line_col_snippet_and_hint(rt: Runtime) -> None:
    (v,) = _violations(rt, "x = 1\nimport os\n")
    assert (v.rule, v.line, v.col, v.snippet) == ("import", 2, 0, "import os")
    assert "os" in v.message and "numpy" in v.hint  # the hint lists what is allowed


def test_columns_count_characters_not_bytes(rt: Runtime) -> None:
    (v,) = [v for v in _violations(rt, "s = 'héllo wörld'; y = eval(s)") if v.rule == "function"]
    assert v.col == 23 and v.snippet == "eval(s)"


@pytest.mark.parametrize("code, snippet", [
    ("f = eval\nf('1')", "eval"),
    ("from os import system", "from os import system"),
    ("import importlib\nimportlib.import_module('os')", "importlib"),
    ("import numpy as np\nload = np.load", "np.load"),
    ("from numpy.lib.stride_tricks import as_strided", "from numpy.lib.stride_tricks import as_strided"),
])
def test_aliases_and_routes_are_refused(rt: Runtime, code: str, snippet: str) -> None:
    violations = _violations(rt, code)
    assert any(snippet in v.snippet for v in violations), violations


def test_dunder_import_is_refused_three_ways(rt: Runtime) -> None:
    violations = _violations(rt, "__import__('os')")
    assert {v.rule for v in violations} >= {"function", "attribute"}
    assert all(v.line == 1 for v in violations)


def test_every_violation_is_reported_in_source_order(rt: Runtime) -> None:
    violations = _violations(rt, "import os\nimport sys\nopen('x')\n")
    assert [v.line for v in violations] == [1, 2, 3]
    assert [v.rule for v in violations] == ["import", "import", "function"]
    assert "inject" in violations[2].hint


def test_regex_rule(rt: Runtime) -> None:
    policy = Policy.default().add_regex(r"DROP\s+TABLE", "no schema changes", "use SELECT")
    with Runtime(policy=policy) as custom:
        (v,) = _violations(custom, "q = 'SELECT 1'\nq2 = 'DROP  TABLE t'")
        assert (v.rule, v.line, v.col, v.hint) == ("regex", 2, 6, "use SELECT")
        assert custom.execute("q = 'SELECT 1'").ok


def test_invalid_regex_fails_in_the_host() -> None:
    with pytest.raises(Exception, match="unterminated|missing"):
        Policy.default().add_regex("(", "broken")


def test_builders_return_new_policies() -> None:
    base = Policy.default()
    derived = base.allow_imports("fnmatch").deny_functions("input", "print").deny_imports("pandas")
    assert derived is not base
    assert base.imports.allows("pandas") and not derived.imports.allows("pandas")
    assert derived.imports.allows("fnmatch") and not base.imports.allows("fnmatch")
    assert "print" in derived.functions.denied and "print" not in base.functions.denied
    assert base.allow_functions("vars").functions.denied == base.functions.denied - {"vars"}
    assert "secret" in base.deny_attributes("secret").attributes.denied
    assert isinstance(base.imports, ImportRule) and isinstance(base.functions, FunctionRule)
    assert isinstance(base.attributes, AttributeRule)
    assert base.add_regex("x", "m").regexes == (RegexRule("x", "m"),)


def test_custom_policy_through_runtime() -> None:
    policy = Policy.default().allow_imports("fnmatch").deny_functions("print")
    with Runtime(policy=policy) as custom:
        assert custom.execute("import fnmatch\nfnmatch.fnmatch('a.py', '*.py')").value_repr == "True"
        (v,) = _violations(custom, "print(1)")
        assert v.rule == "function"


def test_submodule_allowlist_and_denylist(rt: Runtime) -> None:
    assert rt.execute("import numpy.linalg as la\nla.norm([3, 4])").value_repr.endswith("5.0)") \
        or rt.execute("import numpy.linalg as la\nfloat(la.norm([3, 4]))").value_repr == "5.0"
    _violations(rt, "import numpy.ctypeslib")
    _violations(rt, "import os.path")


def test_rejected_cell_never_runs(rt: Runtime) -> None:
    calls: list[int] = []
    rt.inject("tick", lambda: calls.append(1) or len(calls))
    assert rt.execute("before = tick()").ok
    result = rt.execute("after = tick()\nimport os")
    assert result.error.kind == "policy"
    assert calls == [1]  # the remote call in the refused cell never fired
    assert rt.execute("'after' in dir()").value_repr == "False"


def test_runtime_refusals_are_written_for_the_model(rt: Runtime) -> None:
    result = rt.execute("import pandas as pd\npd.read_csv('/etc/hostname')")
    assert result.error.kind == "exception"
    assert "inject" in result.error.message  # what to do instead
    (v,) = _violations(rt, "import numpy as np\nnp.lib.stride_tricks.as_strided")
    assert "sliding_window_view" in v.hint
    result = rt.execute("import pandas as pd\ndf = pd.DataFrame({'a': [1]})\ndf.query('a > 0')")
    assert "boolean masks" in result.error.message


@pytest.mark.parametrize("code, says", [
    ("import pandas as pd\npd.DataFrame({'a': [1]}).agg('_mgr')", "call it directly"),
    ("import random\nobject.__new__(random.Random)", "call Random(...) instead"),
    ("import pandas as pd\ndf = pd.DataFrame({'a': [1]})\ndf.__init__({'b': [2]})", "re-initialise"),
    ("class C:\n    pass\nC.__module__ = 'json'", "define it in the class body"),
    ("from dataclasses import dataclass\nclass C:\n    __annotations__ = {'a b': int}\ndataclass(C)",
     "must be identifiers"),
    ("import functools, json\nfunctools.update_wrapper(json.JSONEncoder, len)", "not defined by the cell"),
    ("import pandas as pd\npd.DataFrame({'a': [1]}).plot(backend='x')", "plotting backend is fixed"),
    ("import asyncio\nasync def m():\n    return asyncio.current_task().get_loop()\nawait m()",
     "event loop belongs to the runtime"),
    ("import enum\nenum.Enum('E', ['__reduce__'])", "plain names"),
    ("import asyncio.events", "is not allowed"),
    ("import numpy as np\nnp.core.multiarray", "not available in the cave"),
    ("import abc\nabc.ABCMeta('X', (), {'__array_interface__': {}})", "class statement"),
])
def test_layer_2_refusals_say_why_and_keep_the_session(rt: Runtime, code: str, says: str) -> None:
    assert rt.execute("kept = {'rows': [1, 2]}").ok
    result = rt.execute(code)
    assert not result.ok
    text = result.error.message + " ".join(v.hint for v in result.error.violations)
    assert says in text, result.error
    assert result.error.kind == "policy" or result.rolled_back
    assert rt.execute("kept['rows'].append(3)\nkept").value_repr == "{'rows': [1, 2, 3]}"
    assert rt.execute("import pandas as pd\nint(pd.DataFrame({'a': [1, 2]}).agg('sum').iloc[0])"
                      ).value_repr == "3"
