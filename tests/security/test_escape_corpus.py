"""The escape corpus: attack cells run through `Runtime`, then the harm is checked.

Every attack aims at something concrete (the canary file, the host's
environment, a process, a socket, a shared module, a raw memory pointer) and
says so by printing its loot or the word ESCAPED when it gets there. The test
then checks, independently of any exception, that the harm did not happen
(see `conftest.Harm`). ``{canary}`` and ``{canary_dir}`` are filled in.
"""

from __future__ import annotations

import pytest

from cavelite import Runtime

# Each entry: id -> cell. Attacks end by printing what they got (or ESCAPED).
ATTACKS: dict[str, str] = {
    # --- class-hierarchy walks ----------------------------------------------------------
    "subclasses_walk": "print(().__class__.__base__.__subclasses__())",
    "object_subclasses": "print(object.__subclasses__())",
    "type_mro_subclasses": "base = type.mro(tuple)[-1]\n"
                           "print(getattr(base, '__subcl' + 'asses__')())",
    "type_dunder_subclasses": "print(type.__subclasses__(object))",
    "mro_attribute": "print(int.__mro__[-1])",
    "class_dict_dynamic": "print(getattr(int, '__di' + 'ct__'))",
    "vars_builtin": "print(vars(int))",
    "class_of_class_bases": "t = ().__class__.__class__\nprint(getattr(t, '__ba' + 'ses__'))",
    # --- builtins recovery through function globals --------------------------------------
    "func_globals": "def f(): pass\nprint(f.__globals__['__builtins__']['open']('{canary}').read())",
    "func_globals_dynamic": "def f(): pass\ng = getattr(f, '__glob' + 'als__')\nprint(g)",
    "library_func_globals": "import json\nprint(getattr(json.dumps, '__globals__')['os'])",
    "builtins_name": "print(__builtins__['open']('{canary}').read())",
    "func_builtins_attr": "def f(): pass\nprint(getattr(f, '__built' + 'ins__')['open'])",
    "builtin_self_is_module": "m = getattr(print, '__se' + 'lf__')\nprint(m.open('{canary}').read())",
    "open_builtin": "print(open('{canary}').read())",
    "eval_exec_compile": "exec(\"print(open('{canary}').read())\")",
    "globals_locals": "print(globals()['__builtins__'])",
    "breakpoint_input": "breakpoint()",
    # --- frames ---------------------------------------------------------------------------
    "generator_gi_frame": "def g():\n    yield 1\ngen = g()\nprint(gen.gi_frame.f_back.f_globals)",
    "generator_frame_dynamic": "def g():\n    yield 1\ngen = g()\n"
                               "fr = getattr(gen, 'gi_' + 'frame')\nprint(fr.f_builtins)",
    "coroutine_cr_frame": "async def c():\n    pass\nco = c()\ntry:\n"
                          "    fr = getattr(co, 'cr_' + 'frame')\n    print('ESCAPED', fr)\n"
                          "finally:\n    co.close()",
    "traceback_tb_frame": "try:\n    1 / 0\nexcept Exception as e:\n"
                          "    tb = getattr(e, '__trace' + 'back__')\n"
                          "    print('ESCAPED', tb.tb_frame.f_globals)",
    "frame_f_back": "import asyncio\nasync def main():\n"
                    "    return asyncio.current_task().get_stack()\n"
                    "s = await main()\nprint('ESCAPED', s[0].f_back.f_globals)",
    "task_stack_dynamic": "import asyncio\nasync def main():\n"
                          "    return getattr(asyncio.current_task(), 'get_' + 'stack')()\n"
                          "s = await main()\nprint('ESCAPED', s)",
    "frame_via_format": "try:\n    1 / 0\nexcept Exception as e:\n"
                        "    print('{0.__traceback__.tb_frame.f_globals}'.format(e))",
    # --- format-string attribute access ------------------------------------------------------
    "format_class": "print('{0.__class__.__base__.__subclasses__}'.format(1))",
    "format_map": "print('{x.__class__.__mro__}'.format_map({'x': 1}))",
    "format_unbound": "print(str.format('{0.__class__}', 1))",
    "format_through_map": "def f(): pass\nprint(list(map(str.format, ['{0.__globals__}'], [f])))",
    "format_type_of_str": "print(type('').format('{0.__class__}', 1))",
    "format_nested_spec": "print('{0:{1.__class__}}'.format(1, 2))",
    "string_formatter": "import string\nprint(string.Formatter().get_field('0.__class__', (1,), {}))",
    "methodcaller_format": "import operator\ndef f(): pass\n"
                           "print(operator.methodcaller('format', f)('{0.__globals__}'))",
    "attrgetter_format": "import operator\ndef f(): pass\n"
                         "print(operator.attrgetter('format')('{0.__globals__}')(f))",
    "attrgetter_dunder": "import operator\ndef f(): pass\n"
                         "print(operator.attrgetter('__globals__')(f))",
    # --- runtime-built names, str subclasses ------------------------------------------------
    "str_subclass_name": "class S(str):\n    def __eq__(self, o):\n        return False\n"
                         "    def __hash__(self):\n        return 7\n"
                         "def f(): pass\nprint(getattr(f, S('__globals__')))",
    "str_subclass_hasattr": "class S(str):\n    pass\ndef f(): pass\n"
                            "print('ESCAPED' if hasattr(f, S('__globals__')) else 'no')",
    "setattr_code_dynamic": "def f(): return 1\nsetattr(f, '__co' + 'de__', None)",
    # --- AttributeError.obj ------------------------------------------------------------------
    "attributeerror_obj_module": "import random\ntry:\n    random.nope\n"
                                 "except AttributeError as e:\n    m = e.obj\n"
                                 "if type(m).__name__ == 'module':\n    print('ESCAPED')\n"
                                 "print(m._os)",
    "attributeerror_obj_denied": "import numpy as np\ntry:\n    np.load\n"
                                 "except AttributeError as e:\n    m = e.obj\n"
                                 "if type(m).__name__ == 'module':\n    print('ESCAPED')\n"
                                 "print(m.load)",
    # --- except* -------------------------------------------------------------------------------
    "except_star_shadow": "try:\n    raise ExceptionGroup('g', [ValueError()])\n"
                          "except* ValueError as _getattr_:\n    pass",
    "except_star_traceback": "try:\n    raise ExceptionGroup('g', [ValueError()])\n"
                             "except* ValueError as eg:\n"
                             "    print('ESCAPED', getattr(eg, '__trace' + 'back__').tb_frame)",
    # --- guard shadowing -----------------------------------------------------------------------
    "shadow_posonly": "def f(_getattr_=getattr, /):\n    return _getattr_\nf()",
    "shadow_lambda": "(lambda _getattr_: 1)(2)",
    "shadow_comprehension": "[1 for _getattr_ in range(2)]",
    "shadow_walrus": "(_getattr_ := getattr)",
    "shadow_import_as": "import json as _getattr_",
    "shadow_except_as": "try:\n    1 / 0\nexcept Exception as _write_:\n    pass",
    "shadow_match": "match 1:\n    case _getiter_:\n        pass",
    "shadow_global": "def f():\n    global _getattr_\n    _getattr_ = 1\nf()",
    "shadow_vararg": "def f(*_getiter_):\n    pass",
    "shadow_class": "class _write_:\n    pass",
    # --- modules re-exported by allowed modules ----------------------------------------------
    "random_os": "import random\nrandom._os.system('cat {canary}')",
    "pandas_io_common_os": "import pandas as pd\npd.io.common.os.system('cat {canary}')",
    "warnings_sys": "import warnings\nprint(warnings.sys.modules['os'].environ)",
    "collections_abc_sys": "import collections.abc\nprint(collections.abc.sys.modules)",
    "numpy_npyio": "import numpy as np\nprint(np.lib.npyio.load('{canary}'))",
    "numpy_ctypeslib": "import numpy as np\nprint(np.ctypeslib.ctypes)",
    "from_import_npyio": "from numpy.lib import npyio\nprint(npyio.load('{canary}'))",
    "asyncio_subprocess": "import asyncio\nasyncio.subprocess",
    "pandas_pickle_compat": "from pandas.compat import pickle_compat\nprint(pickle_compat)",
    # --- numpy / pandas I/O and pickle doors ------------------------------------------------
    "np_load_pickle": "import numpy as np\nprint(np.load('{canary}', allow_pickle=True))",
    "np_load_alias": "import numpy as np\nf = np.load\nprint(f('{canary}'))",
    "np_load_dynamic": "import numpy as np\nprint(getattr(np, 'lo' + 'ad')('{canary}'))",
    "pd_read_pickle": "import pandas as pd\nprint(pd.read_pickle('{canary}'))",
    "pd_read_csv_canary": "import pandas as pd\nprint(pd.read_csv('{canary}', header=None))",
    "pd_read_csv_file_url": "import pandas as pd\nprint(pd.read_csv('file://{canary}'))",
    "pd_read_csv_passwd": "import pandas as pd\nprint(pd.read_csv('/etc/passwd', sep=':'))",
    "pd_read_json_canary": "import pandas as pd\nprint(pd.read_json('{canary}'))",
    "np_loadtxt": "import numpy as np\nprint(np.loadtxt('{canary}', dtype=str))",
    "np_genfromtxt": "import numpy as np\nprint(np.genfromtxt('{canary}', dtype=str))",
    "np_fromfile": "import numpy as np\nprint(bytes(getattr(np, 'from' + 'file')('{canary}', "
                   "dtype='u1')))",
    "np_memmap": "import numpy as np\nprint(bytes(np.memmap('{canary}', mode='r')))",
    "df_to_csv_new_file": "import pandas as pd\npd.DataFrame({'a': [1]}).to_csv('{canary_dir}/x.csv')",
    "df_to_csv_overwrite": "import pandas as pd\npd.DataFrame({'a': [1]}).to_csv('{canary}')",
    "ndarray_tofile": "import numpy as np\nnp.zeros(3).tofile('{canary}')",
    "io_open": "import io\nprint(io.open('{canary}').read())",
    "pd_eval_attribute": "import pandas as pd\nprint(pd.eval('(1).__class__.__base__'))",
    "df_query_attribute": "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\n"
                          "print(df.query('a.__class__.__base__ == 1'))",
    "df_eval_attribute": "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\n"
                         "print(df.eval('a.__class__'))",
    "np_lib_format_pickle": "from numpy.lib import format\nprint(format.read_array)",
    # --- ctypes and raw memory -----------------------------------------------------------------
    "import_ctypes": "import ctypes\nprint(ctypes.CDLL(None))",
    "ndarray_ctypes_private": "import numpy as np\nprint(np.zeros(3).ctypes._as_parameter_)",
    "as_strided": "import numpy as np\nfrom numpy.lib.stride_tricks import as_strided\n"
                  "a = np.zeros(1, dtype=np.uint8)\n"
                  "print('ESCAPED', bytes(as_strided(a, shape=(4096,), strides=(1,)))[:64])",
    "as_strided_dynamic": "import numpy as np\nst = np.lib.stride_tricks\n"
                          "f = getattr(st, 'as_' + 'strided')\nprint('ESCAPED', f)",
    "dummy_array": "import numpy as np\nprint('ESCAPED', np.lib.stride_tricks.DummyArray)",
    "getattr_hook_array_interface":
        "import numpy as np\nclass P:\n    def __getattr__(self, name):\n"
        "        if name == '__array_interface__':\n"
        "            return {'shape': (64,), 'typestr': '|u1', 'data': (id(self), False),"
        " 'version': 3}\n        raise AttributeError(name)\n"
        "a = np.asarray(P())\nif a.dtype == np.uint8:\n    print('ESCAPED', bytes(a))",
    "type3_array_interface":
        "import numpy as np\nd = {'shape': (64,), 'typestr': '|u1', 'data': (id(1), False), "
        "'version': 3}\nX = type('X', (), {'__array_interface__': d})\n"
        "print('ESCAPED', bytes(np.asarray(X())))",
    "getstate_copy_array_interface":
        "import copy\nimport numpy as np\nclass C:\n    def __getstate__(self):\n"
        "        return {'__array_interface__': {'shape': (64,), 'typestr': '|u1',"
        " 'data': (id(1), False), 'version': 3}}\n"
        "print('ESCAPED', bytes(np.asarray(copy.copy(C()))))",
    "make_dataclass_namespace":
        "import dataclasses\nimport numpy as np\n"
        "X = dataclasses.make_dataclass('X', [], namespace={'__array_interface__': {"
        "'shape': (64,), 'typestr': '|u1', 'data': (id(1), False), 'version': 3}})\n"
        "print('ESCAPED', bytes(np.asarray(X())))",
    # --- __code__ / __closure__ tampering ---------------------------------------------------
    "code_swap": "def f():\n    return 1\ndef g():\n    return 2\nf.__code__ = g.__code__",
    "closure_cell_write": "def outer():\n    x = 1\n    def inner():\n        return x\n"
                          "    return inner\ni = outer()\ni.__closure__[0].cell_contents = 2",
    "defaults_dynamic": "def f(a=1):\n    return a\nsetattr(f, '__defa' + 'ults__', (2,))",
    "code_dynamic": "def f(): pass\nc = getattr(f, '__co' + 'de__')\nprint('ESCAPED', c)",
    # --- unicode (NFKC) lookalikes -----------------------------------------------------------
    "nfkc_eval": "ｅｖａｌ('1 + 1')",
    "nfkc_open": "print(ｏｐｅｎ('{canary}').read())",
    "nfkc_dunder": "print(().__ｃｌａｓｓ__.__ｂａｓｅ__.__ｓｕｂｃｌａｓｓｅｓ__())",
    "nfkc_import": "__ｉｍｐｏｒｔ__('os').system('cat {canary}')",
    "nfkc_string_name": "def f(): pass\nprint(getattr(f, '__ｇｌｏｂａｌｓ__'))",
    # --- type() and metaclass tricks ---------------------------------------------------------
    "type3_reduce": "X = type('X', (), {'__reduce__': lambda self: (print, ('ESCAPED',))})\n"
                    "print(X)",
    "type_of_class_call": "T = type(int)\nX = T('X', (), {'__getattribute__': lambda s, n: 1})\n"
                          "print('ESCAPED', X)",
    "class_dunder_class_call": "T = int.__class__\nprint('ESCAPED', T('X', (), {'__reduce__': 1}))",
    "type_new_direct": "print('ESCAPED', type.__new__(type, 'X', (), {'__reduce_ex__': 1}))",
    "metaclass_keyword": "class M(type):\n    pass\nclass X(metaclass=M):\n    pass",
    "typing_string_annotation": "import typing\ndef f(x: '().__class__.__base__'):\n    pass\n"
                                "print('ESCAPED', typing.get_type_hints(f))",
    "typing_forward_ref_in_list": "import typing\n"
                                  "def f(x: typing.List['(1).__class__.__base__']):\n    pass\n"
                                  "print('ESCAPED', typing.get_type_hints(f))",
    "singledispatch_annotation": "import functools\n@functools.singledispatch\n"
                                 "def f(x):\n    pass\n@f.register\n"
                                 "def g(x: '().__class__.__base__'):\n    pass\nprint('ESCAPED')",
    # --- host environment ------------------------------------------------------------------
    "env_pandas_os": "import pandas as pd\nprint(pd.io.common.os.environ)",
    "env_proc_self": "import pandas as pd\nprint(pd.read_csv('/proc/self/environ', sep='\\0'))",
    "env_proc_parent": "import pandas as pd\nprint(pd.read_csv('/proc/1/environ', sep='\\0'))",
    # --- processes and sockets ---------------------------------------------------------------
    "asyncio_create_subprocess": "import asyncio\n"
                                 "p = await asyncio.create_subprocess_shell('cat {canary}')",
    "loop_subprocess_dynamic": "import asyncio\nasync def main():\n"
                               "    loop = asyncio.current_task().get_loop()\n"
                               "    f = getattr(loop, 'subprocess_' + 'shell')\n"
                               "    return await f(asyncio.Protocol, 'cat {canary}')\n"
                               "print('ESCAPED', await main())",
    "asyncio_open_connection": "import asyncio\n"
                               "r, w = await asyncio.open_connection('127.0.0.1', 9)",
    "loop_create_connection": "import asyncio\nasync def main():\n"
                              "    loop = asyncio.current_task().get_loop()\n"
                              "    f = getattr(loop, 'create_' + 'connection')\n"
                              "    return await f(asyncio.Protocol, '127.0.0.1', 9)\n"
                              "print('ESCAPED', await main())",
    # --- shared state ----------------------------------------------------------------------------
    "monkeypatch_json_dumps": "import json\njson.dumps = lambda *a, **k: 'ESCAPED'",
    "monkeypatch_setattr_math": "import math\nsetattr(math, 'pi', 3)",
    "monkeypatch_class": "import json\njson.JSONEncoder.default = lambda self, o: 'ESCAPED'",
    "monkeypatch_module_table": "import json\njson.encoder.ESCAPE_DCT['a'] = 'ESCAPED'",
    "monkeypatch_builtin_type": "int.__add__ = lambda a, b: 0",
    # --- pandas' string evaluators (no guards inside) ----------------------------------------
    "df_query_class_walk": "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\n"
                           "print(df.query('index.__class__.__base__.__subclasses__()'))",
    "df_eval_dynamic_name": "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\n"
                            "f = getattr(df, 'ev' + 'al')\nprint(f('a.__class__'))",
    "pd_eval_explicit_scope": "import pandas as pd\n"
                              "print(pd.eval('x.__class__', local_dict={'x': 1}, global_dict={}))",
    # --- the C-level import path (PyImport_Import passes an empty list) ---------------------
    "import_with_list_fromlist": "m = __import__('os', {}, {}, [])\nprint(m.getcwd())",
    "builtins_import_via_getattr": "f = getattr(print, '__self__').__import__\n"
                                   "print(f('os', {}, {}, []).getcwd())",
    # --- the native self._x fast path in cell methods ---------------------------------------
    "method_self_foreign_object": "import random\nclass Q:\n    def peek(self):\n"
                                  "        return self._os\nprint(Q.peek(random.Random()))",
    "method_self_rebound": "import random\nclass Q:\n    def peek(self, other):\n"
                           "        self = other\n        return self._inst\n"
                           "print(Q().peek(random))",
    "method_self_shadowed_in_lambda": "import random\nclass Q:\n    def peek(self):\n"
                                      "        f = lambda self: self._inst\n"
                                      "        return f(random)\nprint(Q().peek())",
    "method_staticmethod_first_arg": "import random\nclass Q:\n    @staticmethod\n"
                                     "    def peek(self):\n        return self._inst\n"
                                     "print(Q.peek(random))",
}


# Attacks whose defeat is a harmless answer rather than a refusal.
HARMLESS_ANSWER = {"str_subclass_hasattr", "getattr_hook_array_interface"}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_does_no_harm(cave: Runtime, canary, harm, name: str) -> None:
    code = ATTACKS[name]
    cell = code.replace("{canary_dir}", str(canary.dir)).replace("{canary}", str(canary.file))
    result = cave.execute(cell)
    harm.assert_none(result)
    if name not in HARMLESS_ANSWER:
        # Refused outright: a policy violation or an error, never a completed attack.
        assert not result.ok, f"the attack cell ran to completion: {result}"


def test_corpus_is_large_enough() -> None:
    assert len(ATTACKS) >= 60
