"""Ordinary data-analysis cells run unchanged under the default policy, with the right answer."""

from __future__ import annotations

import pytest

from cavelite import Runtime

# id -> (cell, expected value_repr of its last expression)
LEGIT: dict[str, tuple[str, str]] = {
    "exception_chaining": ("try:\n    try:\n        1 / 0\n    except ZeroDivisionError as e:\n"
                           "        raise ValueError('bad') from e\nexcept ValueError as e:\n"
                           "    msg = f'{e} <- {type(e.__cause__).__name__}'\nmsg",
                           "'bad <- ZeroDivisionError'"),
    "remote_style_query_method": ("class Repo:\n    def query(self, sql):\n        return sql.upper()\n"
                                  "Repo().query('select 1')", "'SELECT 1'"),
    "datetime_strptime": ("import datetime, time\n"
                          "d = datetime.datetime.strptime('2024-02-29 13:45', '%Y-%m-%d %H:%M')\n"
                          "d.day, d.hour, time.strptime('2024', '%Y').tm_year", "(29, 13, 2024)"),
    "stdlib_not_preloaded": ("import statistics, fractions, zoneinfo, datetime\n"
                             "tz = zoneinfo.ZoneInfo('Asia/Tokyo')\n"
                             "datetime.datetime(2024, 1, 1, tzinfo=tz).utcoffset().seconds // 3600,"
                             " str(fractions.Fraction(1, 3) * 3)", "(9, '1')"),
    "pandas_groupby": ("import pandas as pd\ndf = pd.DataFrame({'k': ['a', 'b', 'a'], 'v': [1, 2, 3]})\n"
                       "df.groupby('k')['v'].sum().to_dict()", "{'a': 4, 'b': 2}"),
    "pandas_merge": ("import pandas as pd\na = pd.DataFrame({'id': [1, 2], 'x': [10, 20]})\n"
                     "b = pd.DataFrame({'id': [2, 1], 'y': ['b', 'a']})\n"
                     "a.merge(b, on='id').sort_values('id')['y'].tolist()", "['a', 'b']"),
    "pandas_pivot": ("import pandas as pd\ndf = pd.DataFrame({'r': ['x', 'x', 'y'], 'c': ['p', 'q', 'p'],"
                     " 'v': [1, 2, 3]})\np = df.pivot_table(index='r', columns='c', values='v',"
                     " aggfunc='sum', fill_value=0)\nint(p.loc['y', 'p'] + p.loc['x', 'q'])", "5"),
    "pandas_boolean_mask": ("import pandas as pd\ndf = pd.DataFrame({'a': [1, 5, 9]})\n"
                            "int(df[df.a > 2].a.sum())", "14"),
    "pandas_assign_apply": ("import pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})\n"
                            "df['b'] = df['a'].apply(lambda v: v * 10)\ndf.b.tolist()", "[10, 20]"),
    "pandas_datetime": ("import pandas as pd\ns = pd.to_datetime(pd.Series(['2024-01-31', '2024-02-29']))\n"
                        "s.dt.month.tolist()", "[1, 2]"),
    "pandas_read_csv_text": ("import io\nimport pandas as pd\n"
                             "pd.read_csv(io.StringIO('a,b\\n1,2\\n3,4')).b.sum()", "np.int64(6)"),
    "pandas_to_csv_string": ("import pandas as pd\npd.DataFrame({'a': [1]}).to_csv(index=False)",
                             "'a\\n1\\n'"),
    "numpy_math": ("import numpy as np\na = np.arange(6).reshape(2, 3)\n"
                   "(a @ a.T).tolist()", "[[5, 14], [14, 50]]"),
    "numpy_stats": ("import numpy as np\nx = np.array([1.0, 2.0, 3.0, 4.0])\n"
                    "round(float(x.std()), 4), float(np.median(x))", "(1.118, 2.5)"),
    "numpy_random_seeded": ("import numpy as np\nrng = np.random.default_rng(0)\n"
                            "rng.integers(0, 10, 3).shape", "(3,)"),
    "numpy_sliding_window": ("import numpy as np\n"
                             "np.lib.stride_tricks.sliding_window_view(np.arange(4), 2).sum(axis=1)"
                             ".tolist()", "[1, 3, 5]"),
    "dataclass": ("from dataclasses import dataclass, field, asdict\n@dataclass\nclass P:\n"
                  "    x: int\n    tags: list = field(default_factory=list)\n"
                  "asdict(P(1, ['a']))", "{'x': 1, 'tags': ['a']}"),
    "class_with_dunders": ("class V:\n    def __init__(self, x):\n        self._x = x\n"
                           "    def __add__(self, o):\n        return V(self._x + o._x)\n"
                           "    def __eq__(self, o):\n        return self._x == o._x\n"
                           "    def __repr__(self):\n        return f'V({self._x})'\n"
                           "    __hash__ = None\nV(1) + V(2)", "V(3)"),
    "super_init": ("class A:\n    def __init__(self, n):\n        self.n = n\nclass B(A):\n"
                   "    def __init__(self):\n        super().__init__(5)\nB().n", "5"),
    "private_mangled": ("class C:\n    def __init__(self):\n        self.__secret = 3\n"
                        "    def get(self):\n        return self.__secret\nC().get()", "3"),
    "enum": ("import enum\nclass Color(enum.Enum):\n    RED = 1\n    GREEN = 2\n"
             "[c.name for c in Color]", "['RED', 'GREEN']"),
    "enum_functional": ("import enum\nE = enum.Enum('E', 'A B')\nE.B.value", "2"),
    "comprehensions": ("{k: [v * v for v in range(k)] for k in range(3)}",
                       "{0: [], 1: [0], 2: [0, 1]}"),
    "fstring_and_format": ("name, n = 'x', 3.14159\n"
                           "f'{name}={n:.2f}', '{0}-{1:>3}'.format('a', 7), '{k}'.format_map({'k': 1})",
                           "('x=3.14', 'a-  7', '1')"),
    "string_template": ("import string\nstring.Template('$a+$b').substitute(a=1, b=2)", "'1+2'"),
    "datetime": ("import datetime as dt\n(dt.date(2024, 3, 1) - dt.timedelta(days=1)).isoformat()",
                 "'2024-02-29'"),
    "zoneinfo": ("import datetime, zoneinfo\ndatetime.datetime(2024, 7, 1, 12, "
                 "tzinfo=zoneinfo.ZoneInfo('UTC')).hour", "12"),
    "json": ("import json\njson.loads(json.dumps({'a': [1, 2.5, None]}))", "{'a': [1, 2.5, None]}"),
    "regex": ("import re\nre.findall(r'(\\w+)@(\\w+)', 'a@b c@d')", "[('a', 'b'), ('c', 'd')]"),
    "statistics": ("import statistics\nstatistics.mean([1, 2, 3, 4]), statistics.median([3, 1, 2])",
                   "(2.5, 2)"),
    "decimal": ("from decimal import Decimal, getcontext\ngetcontext().prec = 6\n"
                "str(Decimal(1) / Decimal(7))", "'0.142857'"),
    "fractions": ("from fractions import Fraction\nFraction(1, 3) + Fraction(1, 6)", "Fraction(1, 2)"),
    "collections": ("from collections import Counter, defaultdict, namedtuple, deque\n"
                    "P = namedtuple('P', 'x y')\nd = defaultdict(int)\nd['a'] += 2\n"
                    "Counter('abca').most_common(1), d['a'], P(1, 2).y, deque([1, 2], maxlen=1)[0]",
                    "([('a', 2)], 2, 2, 2)"),
    "itertools": ("import itertools\nlist(itertools.combinations('abc', 2))[:2], "
                  "list(itertools.accumulate([1, 2, 3]))", "([('a', 'b'), ('a', 'c')], [1, 3, 6])"),
    "functools": ("import functools\n@functools.lru_cache(maxsize=None)\ndef fib(n):\n"
                  "    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
                  "fib(30), functools.reduce(lambda a, b: a * b, [1, 2, 3, 4])", "(832040, 24)"),
    "functools_wraps": ("import functools\ndef deco(f):\n    @functools.wraps(f)\n"
                        "    def w(*a):\n        return f(*a) + 1\n    return w\n@deco\n"
                        "def g(x):\n    '''doc'''\n    return x\ng(1), g.__name__, g.__doc__",
                        "(2, 'g', 'doc')"),
    "operator_getters": ("import operator\nrows = [{'a': 2}, {'a': 1}]\n"
                         "sorted(rows, key=operator.itemgetter('a'))[0], "
                         "operator.attrgetter('real')(3)", "({'a': 1}, 3)"),
    "try_except_finally": ("out = []\ntry:\n    1 / 0\nexcept ZeroDivisionError as e:\n"
                           "    out.append(type(e).__name__)\nfinally:\n    out.append('done')\nout",
                           "['ZeroDivisionError', 'done']"),
    "except_star": ("got = []\ntry:\n    raise ExceptionGroup('g', [ValueError(1), KeyError(2)])\n"
                    "except* ValueError as eg:\n    got.append(len(eg.exceptions))\n"
                    "except* KeyError:\n    got.append('k')\ngot", "[1, 'k']"),
    "generators": ("def gen(n):\n    for i in range(n):\n        yield i * 2\n"
                   "sum(gen(4)), next(x for x in gen(5) if x > 4)", "(12, 6)"),
    "lambdas_sorting": ("sorted(['bb', 'a', 'ccc'], key=lambda s: -len(s))", "['ccc', 'bb', 'a']"),
    "match_statement": ("def kind(v):\n    match v:\n        case {'type': 'pt', 'x': x}:\n"
                        "            return x\n        case [a, *rest]:\n            return len(rest)\n"
                        "        case _:\n            return None\nkind({'type': 'pt', 'x': 4}), "
                        "kind([1, 2, 3]), kind(0)", "(4, 2, None)"),
    "top_level_await": ("import asyncio\nawait asyncio.sleep(0)\n"
                        "async def double(x):\n    await asyncio.sleep(0)\n    return 2 * x\n"
                        "await asyncio.gather(double(1), double(2))", "[2, 4]"),
    "nonlocal": ("def counter():\n    n = 0\n    def inc():\n        nonlocal n\n        n += 1\n"
                 "        return n\n    return inc\nc = counter()\nc(); c()", "2"),
    "augmented_item_and_attr": ("class Obj:\n    count = 0\nobj = Obj()\nd = {'k': 1}\n"
                                "d['k'] += 1\nobj.count += 5\nd['k'], obj.count", "(2, 5)"),
    "isinstance_type_checks": ("isinstance(int, type), type(3) is int, type(int) is type, "
                               "type('P', (), {'x': 1})().x", "(True, True, True, 1)"),
    "typing_hints": ("from typing import Optional\nimport typing\n"
                     "def f(x: int, y: Optional[str] = None) -> list[int]:\n    return [x]\n"
                     "typing.get_type_hints(f)['x'], f(1)", "(<class 'int'>, [1])"),
    "getattr_public": ("class A:\n    b = 2\ngetattr(A(), 'b'), getattr(A(), 'zz', 0), hasattr(A, 'b')",
                       "(2, 0, True)"),
    "cell_getattr_hook": ("class Rec:\n    def __init__(self, d):\n        self._d = d\n"
                          "    def __getattr__(self, k):\n        return self._d[k]\n"
                          "r = Rec({'a': 1})\nr.a", "1"),
    "copy_deepcopy": ("import copy\nclass S:\n    def __init__(self):\n        self.v = [1]\n"
                      "    def __getstate__(self):\n        return {'v': self.v}\n"
                      "c = copy.deepcopy(S())\nc.v", "[1]"),
    "math_hash_uuid": ("import math, hashlib, uuid\nmath.isclose(math.sqrt(2) ** 2, 2), "
                       "hashlib.sha256(b'x').hexdigest()[:8], len(str(uuid.uuid4()))",
                       "(True, '2d711642', 36)"),
    "textwrap_difflib": ("import textwrap, difflib\ntextwrap.shorten('hello big world', 12), "
                         "round(difflib.SequenceMatcher(None, 'abc', 'abd').ratio(), 2)",
                         "('hello [...]', 0.67)"),
    "pandas_options": ("import pandas as pd\npd.set_option('display.max_rows', 5)\n"
                       "pd.get_option('display.max_rows')", "5"),
}


@pytest.mark.parametrize("name", list(LEGIT))
def test_legit_cell_runs(rt: Runtime, name: str) -> None:
    code, expected = LEGIT[name]
    result = rt.execute(code)
    assert result.ok, f"{name}: {result.error}"
    assert result.value_repr == expected


def test_state_persists_across_cells(rt: Runtime) -> None:
    assert rt.execute("import pandas as pd\ntotals = pd.Series([1, 2, 3])").ok
    result = rt.execute("int(totals.cumsum().iloc[-1])")
    assert result.value_repr == "6"


def test_corpus_is_large_enough() -> None:
    assert len(LEGIT) >= 40
