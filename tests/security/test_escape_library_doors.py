"""Escape corpus, library doors: library code that reads, evaluates or writes for a cell.

Each attack hands a library function a name, a text or a class and lets the
library do what the guards would refuse: evaluate annotation text with the
real built-ins (typing, functools.singledispatch), compile field names
(dataclasses), write attributes onto shared classes and modules (functools,
enum, typing, pandas' registries), dispatch a string to getattr (pandas'
``agg``), import a module by name (pandas' plotting backend, numpy's doc
helpers) or reach pandas' expression engine. An attack prints ESCAPED only
when it reached its target; `conftest.Harm` checks the canary, processes,
sockets and shared modules, and ``intact`` is a cell that must still say True
afterwards (the shared state the attack aimed at is unchanged).
"""

from __future__ import annotations

import pytest

from cavelite import Runtime

REAL_GETATTR = "'built-in function getattr' in repr(g)"  # the cell's own getattr is a bound method

# id -> (attack cell, a cell that must evaluate to True afterwards, or "")
ATTACKS: dict[str, tuple[str, str]] = {}


def attack(cls: str, name: str, cell: str, intact: str = "") -> None:
    ATTACKS[f"{cls}:{name}"] = (cell, intact)


# --- typing and functools evaluate annotation text ------------------------------------------
TYPING = "annotation text"
attack(TYPING, "get_type_hints_empty_globals",
       "import typing\ndef f(x: 'open'):\n    pass\ng = typing.get_type_hints(f, globalns={})['x']\n"
       "print('ESCAPED' if 'built-in function open' in repr(g) else 'no')\nprint(g('{canary}').read())")
attack(TYPING, "get_type_hints_cell_class",
       "import typing\nclass C:\n    x: 'getattr'\ng = typing.get_type_hints(C)['x']\n"
       f"print('ESCAPED' if {REAL_GETATTR} else 'no')")
attack(TYPING, "get_type_hints_callable_instance",
       "import typing\nclass F:\n    __annotations__ = {'x': 'getattr'}\n"
       "g = typing.get_type_hints(F())['x']\n"
       f"print('ESCAPED' if {REAL_GETATTR} else 'no')")
attack(TYPING, "get_type_hints_real_globals_function",
       "import typing\nclass F:\n    __annotations__ = {'x': 'globals'}\n"
       "g = typing.get_type_hints(F())['x']\nns = g()\n"
       "ns['_getattr_'] = lambda o, n, *d: 'ESCAPED'\nprint(ns['_getattr_'](1, 2))",
       "def h(): pass\ngetattr(h, '__name__') == 'h'")
attack(TYPING, "forward_ref_names_a_module",
       "import typing\ndef f(x: typing.ForwardRef('getattr', module='json')):\n    pass\n"
       "g = typing.get_type_hints(f)['x']\n"
       f"print('ESCAPED' if {REAL_GETATTR} else 'no')")
attack(TYPING, "typed_dict_forward_ref_in_main",
       "import typing\nclass T(typing.TypedDict):\n    x: 'getattr'\n"
       "g = typing.get_type_hints(T)['x']\n"
       f"print('ESCAPED' if {REAL_GETATTR} else 'no')")
attack(TYPING, "type_dict_claims_library_module",
       "import typing\nX = type('X', (), {'__module__': 'json', '__annotations__': {'x': 'getattr'}})\n"
       "g = typing.get_type_hints(X)['x']\n"
       f"print('ESCAPED' if {REAL_GETATTR} else 'no')")
attack(TYPING, "wraps_moves_class_to_library_module",
       "import functools, typing, json\nclass C:\n    x: 'getattr'\n"
       "try:\n    functools.wraps(json.dumps)(C)\nexcept AttributeError:\n    pass\n"
       "C.__annotations__['x'] = 'getattr'\n"
       "g = typing.get_type_hints(C)['x']\n"
       f"print('ESCAPED' if {REAL_GETATTR} else 'no')")
attack(TYPING, "wrapped_library_globals",
       "import functools, typing, json\n@functools.wraps(json.dumps)\ndef w(x):\n    pass\n"
       "w.__annotations__['x'] = 'getattr'\ng = typing.get_type_hints(w)['x']\n"
       f"print('ESCAPED' if {REAL_GETATTR} else 'no')")
attack(TYPING, "library_annotations_edited",
       "import json, typing\njson.dump.__annotations__['x'] = 'getattr'\n"
       "g = typing.get_type_hints(json.dump)['x']\n"
       f"print('ESCAPED' if {REAL_GETATTR} else 'no')",
       "import json\n'x' not in json.dump.__annotations__")
attack(TYPING, "singledispatch_register_callable",
       "import functools\n@functools.singledispatch\ndef f(x):\n    return 0\n"
       "class C:\n    __annotations__ = {'x': \"exec('print(1)') or int\"}\n"
       "    def __call__(self, x):\n        return 1\nf.register(C())\n"
       "print('ESCAPED' if f(1) == 1 else 'no')")
attack(TYPING, "singledispatchmethod_public_dispatcher",
       "import functools\nclass C:\n    __annotations__ = {'x': 'open and int'}\n"
       "    def __call__(self, x):\n        return 1\n"
       "sd = functools.singledispatchmethod(lambda s, x: 0)\nsd.dispatcher.register(C())\n"
       "print('ESCAPED' if int in sd.dispatcher.registry else 'no')")

# --- dataclasses compiles field names into code ----------------------------------------------
CODEGEN = "generated code"
attack(CODEGEN, "dataclass_field_name_injection",
       "from dataclasses import dataclass\nclass C:\n    x = 1\n"
       "    __annotations__ = {\"x,print('ESCAPED',open)\": int}\n"
       "C = dataclass(init=False, repr=False, eq=False, unsafe_hash=True)(C)\nc = C()\nc.x = 1\nhash(c)")
attack(CODEGEN, "dataclass_base_field_renamed",
       "import dataclasses\n@dataclasses.dataclass\nclass B:\n    x: int = 0\n"
       "dataclasses.fields(B)[0].name = \"x,print('ESCAPED',open)\"\n"
       "@dataclasses.dataclass(init=False, repr=False, eq=False, unsafe_hash=True)\nclass C(B):\n"
       "    pass\nhash(C())")
attack(CODEGEN, "dataclass_on_library_class",
       "import dataclasses, random\ndataclasses.dataclass(random.Random)\nprint('ESCAPED')",
       "import random\nrandom.Random.__eq__ is object.__eq__")

# --- library functions that write onto what they are given ----------------------------------
WRITERS = "writes through a library"
attack(WRITERS, "update_wrapper_onto_library_class",
       "import functools, random\ndef f(): pass\ntry:\n    functools.update_wrapper(random.Random, f)\n"
       "except AttributeError:\n    pass\nif random.Random.__module__ == '__main__':\n"
       "    random.Random.random = lambda self: 4\n    print('ESCAPED')\nelse:\n    print('no')",
       "import random\nrandom.Random.__module__ == 'random'")
attack(WRITERS, "update_wrapper_plants_array_interface",
       "import functools, numpy as np\nclass W:\n    pass\nw = W()\n"
       "d = {'shape': (8,), 'typestr': '|u1', 'data': (id(1), False), 'version': 3}\n"
       "E = type('E', (), {})\nfunctools.update_wrapper(w, type('S', (), {'x': 1}), "
       "assigned=('__array_interface__',))\nprint('ESCAPED', bytes(np.asarray(w)))")
attack(WRITERS, "update_wrapper_shares_module_view_cache",
       "import functools, numpy as np\ndef w(): pass\n"
       "functools.update_wrapper(w, np, assigned=(), updated=())\n"
       "functools.update_wrapper(w, np, assigned=('__dict__',))\nw.array = 'ESCAPED'\n"
       "print(np.array)", "import numpy as np\nbool(np.array([1, 2]).sum() == 3)")
attack(WRITERS, "update_wrapper_fake_dict_class",
       "import functools, numpy as np\n"
       "d = {'shape': (8,), 'typestr': '|u1', 'data': (id(1), False), 'version': 3}\n"
       "W = type('W', (), {'__dict__': {'__array_interface__': d}})\ndef w(): pass\n"
       "functools.update_wrapper(w, W(), assigned=(), updated=('__dict__',))\n"
       "print('ESCAPED', bytes(np.asarray(w)))")
attack(WRITERS, "wraps_onto_library_function",
       "import functools, json\ndef f():\n    'ESCAPED'\nfunctools.wraps(f)(json.dumps)\n"
       "print(json.dumps.__doc__)", "import json\njson.dumps.__name__ == 'dumps'")
attack(WRITERS, "total_ordering_on_library_class",
       "import functools, fractions\nclass Lt:\n    def __lt__(self, o):\n        return True\n"
       "functools.total_ordering(fractions.Fraction)\nprint('ESCAPED')",
       "import fractions\n(fractions.Fraction(1, 2) <= fractions.Fraction(1, 3)) is False")
attack(WRITERS, "typing_final_on_library_class",
       "import typing, json\ntyping.final(json.JSONEncoder)\nprint('ESCAPED')")
attack(WRITERS, "no_type_check_on_library_class",
       "import typing, json\ntyping.no_type_check(json.JSONDecoder)\nprint('ESCAPED')")
attack(WRITERS, "update_abstractmethods_on_library_class",
       "import abc, collections\nabc.update_abstractmethods(collections.OrderedDict)\n"
       "print('ESCAPED')")
attack(WRITERS, "global_enum_into_json",
       "import json, enum\nclass E(enum.Enum):\n    dumps = 1\nE.__module__ = 'json'\n"
       "enum.global_enum(E)\nprint('ESCAPED', json.dumps)")
attack(WRITERS, "global_enum_via_wraps",
       "import json, enum, functools\nclass E(enum.Enum):\n    dumps = 1\n"
       "try:\n    functools.wraps(json.dumps)(E)\nexcept AttributeError:\n    pass\n"
       "enum.global_enum(E)\nprint('ESCAPED', json.dumps)")
attack(WRITERS, "pandas_register_accessor",
       "import pandas as pd\nclass Acc:\n    def __init__(self, df):\n        self.df = df\n"
       "pd.api.extensions.register_dataframe_accessor('__array_interface__')(Acc)\n"
       "print('ESCAPED')",
       "import pandas as pd\nnot hasattr(pd.DataFrame, '__array_interface__')")
attack(WRITERS, "pandas_register_accessor_reexported",
       "import pandas as pd\nreg = pd.core.accessor.register_series_accessor\n"
       "reg('evil')(lambda s: 1)\nprint('ESCAPED')",
       "import pandas as pd\nnot hasattr(pd.Series, 'evil')")
attack(WRITERS, "enum_functional_dunder_names",
       "import enum, numpy as np\n"
       "d = {'shape': (8,), 'typestr': '|u1', 'data': (id(1), False), 'version': 3}\n"
       "E = enum.Enum('E', [('__array_interface__', d), ('A', 1)])\n"
       "print('ESCAPED', bytes(np.asarray(E.A)))")
attack(WRITERS, "enum_functional_unhooked_getattr",
       "import enum, numpy as np\n"
       "def ga(self, name):\n    if name != '__array_interface__':\n        raise AttributeError(name)\n"
       "    return {'shape': (8,), 'typestr': '|u1', 'data': (id(1), False), 'version': 3}\n"
       "E = enum.Enum('E', {'__getattr__': ga, 'A': 1})\n"
       "print('ESCAPED', bytes(np.asarray(E.A)))")

# --- pandas: the expression engine and string dispatch ---------------------------------------
PANDAS = "pandas internals"
attack(PANDAS, "expr_with_scope_built_by_object_new",
       "from pandas.core.computation.expr import Expr\n"
       "from pandas.core.computation.scope import Scope, DeepChainMap\n"
       "s = object.__new__(Scope)\ns.scope = DeepChainMap({'x': 1})\ns.resolvers = DeepChainMap()\n"
       "s.temps = {}\ns.target = None\ns.level = 0\n"
       "print('ESCAPED', Expr('x.__class__.__base__', env=s)())")
attack(PANDAS, "computation_through_attributes",
       "import pandas as pd\nexpr = pd.core.computation.expr\nprint('ESCAPED', expr.Expr)")
attack(PANDAS, "computation_scope_subclass",
       "import pandas as pd\nScope = pd.core.computation.scope.Scope\n"
       "class S(Scope):\n    def __init__(self):\n        pass\ns = S()\nprint('ESCAPED')")
attack(PANDAS, "computation_module_reexported",
       "import pandas as pd\nprint('ESCAPED', pd.core.ops.array_ops.expressions)")
attack(PANDAS, "computation_function_reexported",
       "import pandas as pd\nprint('ESCAPED', pd.core.frame.clean_column_name)")
attack(PANDAS, "query_unbound_on_class",
       "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\n"
       "print('ESCAPED', pd.DataFrame.query(df, 'a.__class__ == 1'))")
attack(PANDAS, "query_on_subclass",
       "import pandas as pd\nclass D(pd.DataFrame):\n    pass\n"
       "print('ESCAPED', D({'a': [1]}).eval('a.__class__'))")
attack(PANDAS, "agg_string_eval",
       "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\n"
       "print('ESCAPED', df.agg('eval', expr='a.__class__'))")
attack(PANDAS, "agg_string_private",
       "import pandas as pd\ndf = pd.DataFrame({'a': [1.5]})\nm = df.agg('_mgr')\n"
       "print('ESCAPED', type(m))")
attack(PANDAS, "apply_string_dunder_setattr",
       "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\n"
       "m = pd.Series([1]).apply('__getattribute__', args=('_mgr',))\nprint('ESCAPED', type(m))")
attack(PANDAS, "apply_string_reduce",
       "import pandas as pd\ns = pd.Series([1])\nprint('ESCAPED', s.apply('__reduce_ex__', args=(2,)))")
attack(PANDAS, "apply_string_policy_denied",
       "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\n"
       "df.apply('to_pickle', args=('{canary_dir}/x.pkl',))\nprint('ESCAPED')")
attack(PANDAS, "groupby_agg_string_private",
       "import pandas as pd\ng = pd.DataFrame({'k': [1], 'v': [2]}).groupby('k')['v']\n"
       "print('ESCAPED', g.agg('__getattribute__', '_obj_with_exclusions'))")
attack(PANDAS, "groupby_filter_string_policy_denied",
       "import pandas as pd\ng = pd.DataFrame({'k': [1], 'v': [2]}).groupby('k')['v']\n"
       "g.filter('to_pickle', '{canary_dir}/x.pkl')\nprint('ESCAPED')")
attack(PANDAS, "groupby_apply_string_dunder",
       "import pandas as pd\ng = pd.DataFrame({'k': [1], 'v': [2]}).groupby('k')\n"
       "print('ESCAPED', g.apply('__reduce_ex__', 2))")
attack(PANDAS, "pivot_table_aggfunc_private",
       "import pandas as pd\ndf = pd.DataFrame({'r': ['x'], 'c': ['p'], 'v': [1]})\n"
       "print('ESCAPED', pd.pivot_table(df, index='r', columns='c', values='v', "
       "aggfunc='_obj_with_exclusions'))")
attack(PANDAS, "named_aggregation_private",
       "import pandas as pd\ndf = pd.DataFrame({'k': [1], 'v': [2]})\n"
       "print('ESCAPED', df.groupby('k').agg(m=('v', '__sizeof__')))")
attack(PANDAS, "agg_name_str_subclass",
       "import pandas as pd\nclass S(str):\n    def __getitem__(self, i):\n        return 'x'\n"
       "df = pd.DataFrame({'a': [1.5]})\nprint('ESCAPED', type(df.agg(S('_mgr'))))")
attack(PANDAS, "plot_backend_imports_a_module",
       "import pandas as pd\npd.DataFrame({'a': [1]}).plot(backend='this')\nprint('ESCAPED')")
attack(PANDAS, "plotting_backend_option",
       "import pandas as pd\npd.set_option('plotting.backend', 'this')\nprint('ESCAPED')",
       "import pandas as pd\npd.get_option('plotting.backend') == 'matplotlib'")
attack(PANDAS, "plotting_backend_attribute",
       "import pandas as pd\npd.options.plotting.backend = 'this'\nprint('ESCAPED')",
       "import pandas as pd\npd.get_option('plotting.backend') == 'matplotlib'")

# --- numpy: private modules and import doors ----------------------------------------------------
NUMPY = "numpy internals"
attack(NUMPY, "private_module_import",
       "import numpy._core.multiarray as m\nprint('ESCAPED', m)")
attack(NUMPY, "private_module_through_core_shim",
       "import numpy as np\nprint('ESCAPED', np.core.multiarray)")
attack(NUMPY, "add_newdoc_imports_by_name",
       "import numpy as np\nnp.lib.add_newdoc('this', 's', 'doc')\nprint('ESCAPED')")
attack(NUMPY, "info_imports_toplevel",
       "import numpy as np, io\nout = io.StringIO()\nnp.info('system', toplevel='os', output=out)\n"
       "print('ESCAPED', out.getvalue()[:100])")
attack(NUMPY, "seterrcall_hook",
       "import numpy as np\nnp.seterrcall(lambda *a: print('ESCAPED'))\nnp.seterr(all='call')\n"
       "np.float64(1) / 0")

# --- the event loop ---------------------------------------------------------------------------------
LOOP = "event loop"
attack(LOOP, "task_get_loop",
       "import asyncio\nasync def main():\n    return asyncio.current_task().get_loop()\n"
       "loop = await main()\nloop.set_task_factory(lambda l, c: 1)\nprint('ESCAPED', loop)")
attack(LOOP, "events_submodule_running_loop",
       "import asyncio.events as ev\nasync def main():\n    return ev.get_running_loop()\n"
       "print('ESCAPED', await main())")
attack(LOOP, "selector_loop_subclass_private",
       "import asyncio\nclass L(asyncio.SelectorEventLoop):\n    def __init__(self):\n        pass\n"
       "m = L()._make_subprocess_transport\nprint('ESCAPED')")
attack(LOOP, "events_module_by_import_as",
       "import asyncio.events as ev\nprint('ESCAPED' if type(ev).__name__ == 'module' else 'no')")
attack(LOOP, "base_event_loop_from_submodule",
       "from asyncio.base_events import BaseEventLoop\nclass L(BaseEventLoop):\n"
       "    def __init__(self):\n        pass\nm = L()._make_socket_transport\nprint('ESCAPED')")


# What a refusal by layer 1 or 2 looks like: a policy violation, a guard's AccessDenied
# or ImportDenied, or a name the cell's restricted built-ins do not have.
LAYER_2_REFUSALS = {"PolicyViolation", "AccessDenied", "ImportDenied", "NameError"}
# A library's annotation table reaches the cell read-only: writing to it is a TypeError.
REFUSED_AS = {f"{TYPING}:library_annotations_edited": "TypeError"}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_library_door_does_no_harm(cave: Runtime, canary, harm, name: str) -> None:
    code, intact = ATTACKS[name]
    cell = code.replace("{canary_dir}", str(canary.dir)).replace("{canary}", str(canary.file))
    result = cave.execute(cell)
    harm.assert_none(result)
    assert "Beautiful is better than ugly" not in result.stdout, "a module was imported by name"
    if result.ok:
        # Defeated by a harmless answer: the text was evaluated with the cell's own
        # built-ins, and the attack got as far as checking what it received.
        assert result.stdout.startswith("no"), f"the attack cell ran to completion: {result}"
    else:
        # Refused by the layers these doors bypassed (the policy, the guards or the
        # cell's own built-ins), not only by the audit hook or the kernel below them.
        assert result.error.type in LAYER_2_REFUSALS | {REFUSED_AS.get(name)}, result.error
    if intact:
        after = cave.execute(intact)
        assert after.ok and after.value_repr == "True", f"the shared state changed: {after}"


def test_corpus_covers_every_class() -> None:
    classes = {name.split(":")[0] for name in ATTACKS}
    assert classes == {TYPING, CODEGEN, WRITERS, PANDAS, NUMPY, LOOP}
    assert len(ATTACKS) >= 61
