"""Escape corpus, objects: building, re-shaping and re-reading objects the guards trust.

Classes: constructors skipped or re-run (``object.__new__`` on a library class,
``Cls.__init__`` on an object that exists, ``__class__`` assignment), the
unguarded ``str.format`` reached on numpy strings and ``str`` subclasses,
metaclasses called with a dict (``abc.ABCMeta(name, bases, dict)``), dunder
attributes assigned after a class is made, the guard's own state (module
views, remote proxies), frames behind exceptions and context managers, and
copy/pickle protocols. An attack prints ESCAPED only when it reached its
target; ``intact`` must still evaluate to True in the next cell.
"""

from __future__ import annotations

import pytest

from cavelite import Runtime

ATTACKS: dict[str, tuple[str, str]] = {}
ARRAY = "d = {'shape': (8,), 'typestr': '|u1', 'data': (id(1), False), 'version': 3}\n"


def attack(cls: str, name: str, cell: str, intact: str = "") -> None:
    ATTACKS[f"{cls}:{name}"] = (cell, intact)


# --- constructors skipped or re-run ----------------------------------------------------------
CONSTRUCTION = "object construction"
attack(CONSTRUCTION, "object_new_on_library_class",
       "import random\nr = object.__new__(random.Random)\nprint('ESCAPED', type(r))")
attack(CONSTRUCTION, "class_new_on_itself",
       "import pandas as pd\ndf = pd.DataFrame.__new__(pd.DataFrame)\nprint('ESCAPED')")
attack(CONSTRUCTION, "cell_class_new_on_library_class",
       "import string\nclass C:\n    pass\nt = C.__new__(string.Template)\nt.template = '$x'\n"
       "print('ESCAPED', t.substitute(x=1))")
attack(CONSTRUCTION, "super_new_on_library_class",
       "import json\nclass C:\n    def make(self):\n        return super().__new__(json.JSONDecoder)\n"
       "print('ESCAPED', C().make())")
attack(CONSTRUCTION, "new_through_getattr",
       "import random\nnew = getattr(object, '__new__')\nprint('ESCAPED', new(random.Random))")
attack(CONSTRUCTION, "reinit_module_view",
       "import numpy as np\nclass numpy:\n    lib = 'ESCAPED'\n"
       "class G:\n    class policy:\n        def module_attribute_denied(m, n):\n            return False\n"
       "    def denied_object(self, v):\n        return False\n"
       "type(np).__init__(np, numpy, G())\nprint(np.lib)",
       "import numpy as np\nnp.lib.stride_tricks.sliding_window_view(np.arange(3), 2).shape == (2, 2)")
attack(CONSTRUCTION, "reinit_bound_on_library_object",
       "import fractions\nf = fractions.Fraction(1, 2)\nf.__init__()\nimport decimal\n"
       "c = decimal.Context()\nc.__init__(prec=1)\nprint('ESCAPED')")
attack(CONSTRUCTION, "class_assignment_to_library_class",
       "import json\nclass C:\n    pass\nc = C()\nc.__class__ = json.JSONEncoder\nprint('ESCAPED', c)")
attack(CONSTRUCTION, "class_assignment_through_setattr",
       "import json\nclass C:\n    pass\nc = C()\nsetattr(c, '__class__', json.JSONEncoder)\n"
       "print('ESCAPED', c)")
attack(CONSTRUCTION, "init_subclass_of_library_class",
       "import typing\ntyping.Protocol.__init_subclass__()\nprint('ESCAPED')")
attack(CONSTRUCTION, "new_passed_to_a_library",
       "import random, functools\nmake = functools.partial(object.__new__, random.Random)\n"
       "print('ESCAPED', make())")

# --- the unguarded str.format behind str subclasses --------------------------------------------
FORMAT = "format strings on str subclasses"
attack(FORMAT, "numpy_str_bound",
       "import numpy as np\ndef f(): pass\n"
       "print(np.str_('{0.__globals__[__builtins__]}').format(f))\nprint('ESCAPED')")
attack(FORMAT, "numpy_str_unbound",
       "import numpy as np\ndef f(): pass\nprint(np.str_.format('{0.__globals__}', f))\nprint('ESCAPED')")
attack(FORMAT, "type_of_cell_str",
       "class S(str):\n    pass\ns = S('{0.__globals__}')\ndef f(): pass\n"
       "print(type(s).format(s, f))\nprint('ESCAPED')")
attack(FORMAT, "cell_str_class_format_map",
       "class S(str):\n    pass\ndef f(): pass\n"
       "print(S.format_map(S('{x.__globals__}'), {'x': f}))\nprint('ESCAPED')")
attack(FORMAT, "super_format_in_cell_str",
       "class S(str):\n    def go(self, x):\n        return super().format(x)\ndef f(): pass\n"
       "print(S('{0.__globals__}').go(f))\nprint('ESCAPED')")
attack(FORMAT, "map_numpy_str_format",
       "import numpy as np\ndef f(): pass\nprint(list(map(np.str_.format, ['{0.__globals__}'], [f])))\n"
       "print('ESCAPED')")
attack(FORMAT, "format_through_getattr_on_subclass",
       "import numpy as np\ndef f(): pass\nfm = getattr(np.str_('{0.__globals__}'), 'format')\n"
       "print(fm(f))\nprint('ESCAPED')")
attack(FORMAT, "format_nested_spec_numpy_str",
       "import numpy as np\nprint(np.str_('{0:{1.__class__.__base__}}').format(1, 2))\nprint('ESCAPED')")

# --- metaclasses called with a dict ------------------------------------------------------------
META = "metaclasses"
attack(META, "abcmeta_call_with_array_interface",
       "import abc, numpy as np\n" + ARRAY + "X = abc.ABCMeta('X', (), {'__array_interface__': d})\n"
       "print('ESCAPED', bytes(np.asarray(X())))")
attack(META, "abcmeta_subclass_call",
       "import abc, numpy as np\n" + ARRAY + "class M(abc.ABCMeta):\n    pass\n"
       "X = M('X', (), {'__array_interface__': d})\nprint('ESCAPED', bytes(np.asarray(X())))")
attack(META, "type_of_enum_call",
       "import enum, numpy as np\n" + ARRAY + "T = type(enum.Enum)\n"
       "X = T('X', (), {'__array_interface__': d})\nprint('ESCAPED', bytes(np.asarray(X)))")
attack(META, "class_of_abc_call",
       "import abc\nT = abc.ABC.__class__\nX = T('X', (), {'__reduce__': lambda s: (print, ('ESCAPED',))})\n"
       "print('ESCAPED', X)")
attack(META, "metaclass_view_of_its_own_type",
       "import abc, numpy as np\n" + ARRAY + "V = type(abc.ABCMeta)\n"
       "X = V('X', (), {'__array_interface__': d})\nprint('ESCAPED', bytes(np.asarray(X)))")
attack(META, "metaclass_new_direct",
       "import abc\nX = abc.ABCMeta.__new__(abc.ABCMeta, 'X', (), {'__reduce__': 1})\nprint('ESCAPED', X)")
attack(META, "metaclass_real_behind_view",
       "import abc\nprint('ESCAPED', getattr(abc.ABCMeta, '__cave_' + 'real__'))")
attack(META, "typed_dict_metaclass_namespace_by_keyword",
       "import typing, numpy as np\n" + ARRAY + "class T(typing.TypedDict):\n    x: int\n"
       "M = type(T)\nX = M('X', (), ns={'__array_interface__': d})\n"
       "print('ESCAPED', bytes(np.asarray(X())))")
attack(META, "protocol_metaclass_call",
       "import typing, numpy as np\n" + ARRAY + "T = type(typing.Protocol)\n"
       "X = T('X', (), {'__array_interface__': d})\nprint('ESCAPED', bytes(np.asarray(X())))")

# --- dunder attributes assigned after the class exists -------------------------------------------
DUNDERS = "dunder assignment"
attack(DUNDERS, "module_of_cell_class",
       "class C:\n    pass\nC.__module__ = 'json'\nprint('ESCAPED')")
attack(DUNDERS, "annotations_of_function",
       "def f(x):\n    pass\nf.__annotations__ = {'x': 'open'}\nprint('ESCAPED')")
attack(DUNDERS, "dataclass_fields_planted",
       "import dataclasses\nclass C:\n    pass\nC.__dataclass_fields__ = {}\nprint('ESCAPED')")
attack(DUNDERS, "class_body_attribute_store",
       "import json\nclass C:\n    json.JSONEncoder.__init__ = 1\nprint('ESCAPED')")
attack(DUNDERS, "init_of_library_instance",
       "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\ndf.__init__ = 1\nprint('ESCAPED')")
attack(DUNDERS, "dataclass_field_object_renamed",
       "import dataclasses\n@dataclasses.dataclass\nclass P:\n    x: int = 0\n"
       "f = dataclasses.fields(P)[0]\nf.name = '__class__'\nprint('ESCAPED', dataclasses.asdict(P()))")

# --- the guard's own state -----------------------------------------------------------------------
STATE = "guard state"
attack(STATE, "module_view_cache_through_update_wrapper",
       "import functools, numpy as np\ndef w(): pass\n"
       "functools.update_wrapper(w, np, assigned=('__dict__',))\nw.load = print\nprint('ESCAPED')",
       "import numpy as np\nnot hasattr(np, 'load')")
attack(STATE, "module_view_private_cache_entry",
       "import functools, numpy as np\ndef w(): pass\nfunctools.update_wrapper(w, np)\n"
       "print('ESCAPED' if '_cave_module' in dir(w) else 'no')")
attack(STATE, "cell_function_globals_table",
       "def f(): pass\nf.x = 1\ng = getattr(f, '__glob' + 'als__')\nprint('ESCAPED', g)")
attack(STATE, "function_defaults_of_cell_function",
       "def f(a=1):\n    return a\nf.__defaults__ = (2,)\nprint('ESCAPED')")
attack(STATE, "library_function_attribute",
       "import json\njson.dumps.calls = 0\nprint('ESCAPED')", "import json\nnot hasattr(json.dumps, 'calls')")
attack(STATE, "guard_function_attribute",
       "def f(): pass\nw = [v for v in (getattr,) ][0]\nw.x = 1\nprint('ESCAPED')")
attack(STATE, "namedtuple_api_on_non_namedtuple",
       "import random\nprint('ESCAPED', random.Random()._randbelow(3))")
attack(STATE, "namedtuple_field_defaults_shared",
       "import pandas as pd\nrow = next(pd.DataFrame({'a': [1]}).itertuples())\n"
       "row._field_defaults['a'] = 'ESCAPED'\nprint(row._field_defaults)")
attack(STATE, "wrapped_behind_stand_in",
       "import functools\nprint('ESCAPED', functools.total_ordering.__wrapped__)")

# --- frames behind exceptions and context managers --------------------------------------------------
FRAMES = "frames behind exceptions"
attack(FRAMES, "exit_traceback_frame",
       "class CM:\n    def __enter__(self):\n        return self\n"
       "    def __exit__(self, et, ev, tb):\n        self.fr = getattr(tb, 'tb_' + 'frame')\n"
       "        return True\nc = CM()\nwith c:\n    1 / 0\nprint('ESCAPED', c.fr.f_globals)")
attack(FRAMES, "exitstack_callback_traceback",
       "import contextlib\ngot = []\nwith contextlib.ExitStack() as st:\n"
       "    st.push(lambda et, ev, tb: got.append(tb) or True)\n    1 / 0\n"
       "print('ESCAPED', getattr(got[0], 'tb_' + 'next'))")
attack(FRAMES, "generator_yieldfrom_frame",
       "import json\ndef g():\n    yield from iter([1])\nx = g()\nnext(x)\n"
       "print('ESCAPED', getattr(x, 'gi_' + 'yieldfrom'))")
attack(FRAMES, "coroutine_origin",
       "async def c():\n    pass\nco = c()\ntry:\n    print('ESCAPED', getattr(co, 'cr_' + 'origin'))\n"
       "finally:\n    co.close()")
attack(FRAMES, "exception_context_traceback",
       "try:\n    try:\n        1 / 0\n    except Exception:\n        raise KeyError('k')\n"
       "except KeyError as e:\n    tb = getattr(e.__context__, '__trace' + 'back__')\n"
       "    print('ESCAPED', tb)")

# --- copy and pickle protocols ----------------------------------------------------------------------
COPY = "copy protocols"
attack(COPY, "reduce_ex_of_library_object",
       "import random\nr = random.Random()\nprint('ESCAPED', getattr(r, '__reduce' + '_ex__')(2))")
attack(COPY, "copy_of_module_view_is_a_view",
       "import copy, numpy as np\nm = copy.deepcopy(np)\n"
       "print('ESCAPED' if type(m).__name__ == 'module' else 'no', m.load)")
attack(COPY, "copy_cell_getstate_dunder",
       "import copy, numpy as np\n" + ARRAY + "class C:\n    def __getstate__(self):\n"
       "        return {'__array_interface__': d}\nprint('ESCAPED', bytes(np.asarray(copy.copy(C()))))")
attack(COPY, "type_dict_reduce",
       "import copy\nX = type('X', (), {'__reduce_ex__': lambda s, p: (print, ('ESCAPED',))})\n"
       "copy.copy(X())")
attack(COPY, "type_dict_getnewargs",
       "import copy\nX = type('X', (), {'__getnewargs__': lambda s: ('ESCAPED',)})\ncopy.copy(X())")


# A refusal by layer 1 or 2: a policy violation, a guard's refusal or a missing name.
LAYER_2_REFUSALS = {"PolicyViolation", "AccessDenied", "ImportDenied", "NameError", "KeyError"}
# A library namedtuple's defaults table reaches the cell read-only: writing is a TypeError.
REFUSED_AS = {"guard state:namedtuple_field_defaults_shared": "TypeError"}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_object_attack_does_no_harm(cave: Runtime, canary, harm, name: str) -> None:
    code, intact = ATTACKS[name]
    cell = code.replace("{canary}", str(canary.file))
    result = cave.execute(cell)
    harm.assert_none(result)
    if result.ok:
        assert result.stdout.startswith("no"), f"the attack cell ran to completion: {result}"
    else:
        assert result.error.type in LAYER_2_REFUSALS | {REFUSED_AS.get(name)}, result.error
    if intact:
        after = cave.execute(intact)
        assert after.ok and after.value_repr == "True", f"the shared state changed: {after}"


def test_corpus_covers_every_class() -> None:
    classes = {name.split(":")[0] for name in ATTACKS}
    assert classes == {CONSTRUCTION, FORMAT, META, DUNDERS, STATE, FRAMES, COPY}
