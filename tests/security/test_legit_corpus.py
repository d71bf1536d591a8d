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
    # Issue 8, section 5 (refused before), and what data code does through the doors
    # that layer 2 now checks instead of refusing (string dispatch, typing, functools).
    'itertuples_asdict': (
        "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})\n"
        '[row._asdict() for row in df.itertuples(index=False)]',
        "[{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'y'}]"),
    'namedtuple_api': (
        "import collections\nP = collections.namedtuple('P', 'x y', defaults=[0])\n"
        "P.__doc__ = 'A point'\np = P(1)\n"
        'p._replace(x=3), P._fields, P._make([5, 6]), P._field_defaults, P.__doc__',
        "(P(x=3, y=0), ('x', 'y'), P(x=5, y=6), {'y': 0}, 'A point')"),
    'function_attribute': (
        'def wrapper():\n    wrapper.calls += 1\nwrapper.calls = 0\nwrapper(); wrapper(); wrapper.calls',
        '2'),
    'csv_in_memory': (
        'import csv, io\nbuf = io.StringIO()\nw = csv.writer(buf)\n'
        "w.writerow(['a', 'b']); w.writerows([[1, 2], [3, 4]])\n"
        'rows = list(csv.DictReader(io.StringIO(buf.getvalue())))\n'
        "rows[1]['b'], csv.Sniffer().sniff('a;b\\n1;2').delimiter",
        "('4', ';')"),
    'init_subclass_registry': (
        'class Registry:\n    items = []\n    def __init_subclass__(cls, **kw):\n'
        '        super().__init_subclass__(**kw)\n        cls.tag = cls.__name__.lower()\n'
        '        Registry.items.append(cls.__name__)\nclass A(Registry):\n    pass\n'
        'class B(Registry):\n    pass\nRegistry.items, B.tag',
        "(['A', 'B'], 'b')"),
    'pandas_named_aggregation': (
        'import pandas as pd\n'
        "df = pd.DataFrame({'r': ['N', 'S', 'N'], 'amount': [10.0, 20.5, 7.25], 'qty': [1, 2, 3]})\n"
        "out = df.groupby('r').agg(total=('amount', 'sum'), n=('qty', 'count')).reset_index()\n"
        "out.to_dict('records')",
        "[{'r': 'N', 'total': 17.25, 'n': 2}, {'r': 'S', 'total': 20.5, 'n': 1}]"),
    'pandas_string_dispatch': (
        "import pandas as pd\ndf = pd.DataFrame({'k': ['a', 'b', 'a'], 'v': [1, 4, 9]})\n"
        "df.v.agg(['sum', 'max']).tolist(), df.groupby('k').v.transform('sum').tolist(), "
        "df.v.apply('sqrt').tolist(), df.agg({'v': 'mean'}).tolist()",
        '([14, 9], [10, 4, 10], [1.0, 2.0, 3.0], [4.666666666666667])'),
    'pandas_pivot_crosstab_aggfunc': (
        'import pandas as pd\n'
        "df = pd.DataFrame({'r': ['x', 'x', 'y'], 'c': ['p', 'q', 'p'], 'v': [1, 2, 3]})\n"
        "pd.pivot_table(df, index='r', columns='c', values='v', aggfunc='sum').fillna(0).to_dict(), "
        "pd.crosstab(df.r, df.c).loc['x'].tolist()",
        "({'p': {'x': 1.0, 'y': 3.0}, 'q': {'x': 2.0, 'y': 0.0}}, [1, 1])"),
    'pandas_resample_rolling': (
        'import pandas as pd\n'
        "s = pd.Series([1, 2, 3, 4], index=pd.date_range('2024-01-01', periods=4, freq='D'))\n"
        "s.resample('2D').agg(['sum', 'max']).values.tolist(), s.rolling(2).agg('mean').tolist()[1:]",
        '([[3, 2], [7, 4]], [1.5, 2.5, 3.5])'),
    'pandas_float_format': (
        "import pandas as pd\ndf = pd.DataFrame({'name': ['a'], 'v': [1.23456]})\n"
        "df.to_string(index=False, float_format='{:.2f}'.format).splitlines()[1].split()",
        "['a', '1.23']"),
    'pandas_option_context': (
        "import pandas as pd\nwith pd.option_context('display.float_format', '{:.1f}'.format):\n"
        '    t = repr(pd.Series([1.234]))\nt.split()[1]',
        "'1.2'"),
    'pandas_itertuples_named': (
        "import pandas as pd\ndf = pd.DataFrame({'name': ['a', 'b'], 'v': [1, 2]})\n"
        "r = list(df.itertuples(index=False, name='Row'))[1]\nr, r._fields, r.v",
        "(Row(name='b', v=2), ('name', 'v'), 2)"),
    'functools_wraps_counter': (
        'import functools\ndef counted(fn):\n    @functools.wraps(fn)\n'
        '    def wrapper(*args, **kwargs):\n        wrapper.calls += 1\n'
        '        return fn(*args, **kwargs)\n    wrapper.calls = 0\n    return wrapper\n@counted\n'
        "def add(a, b):\n    '''Add two numbers.'''\n    return a + b\nadd(1, 2); add(3, 4)\n"
        'add.calls, add.__name__, add.__doc__',
        "(2, 'add', 'Add two numbers.')"),
    'hand_written_decorator': (
        'def memo(fn):\n    cache = {}\n    def inner(n):\n        if n not in cache:\n'
        '            cache[n] = fn(n)\n        return cache[n]\n    inner.cache = cache\n'
        '    inner.__name__ = fn.__name__\n    inner.__doc__ = fn.__doc__\n    return inner\n@memo\n'
        "def sq(n):\n    'square'\n    return n * n\n"
        'sq(3), sq(3), len(sq.cache), sq.__name__, sq.__doc__',
        "(9, 9, 1, 'sq', 'square')"),
    'dataclass_frozen_order': (
        'from dataclasses import dataclass, replace, asdict, fields\nfrom typing import Optional\n'
        '@dataclass(frozen=True, order=True)\nclass Trade:\n    symbol: str\n    qty: int\n'
        "    price: float = 0.0\n    note: Optional[str] = None\nt = Trade('AAPL', 10, 1.5)\n"
        't2 = replace(t, qty=5)\n'
        "sorted([t, t2])[0].qty, asdict(t2)['qty'], [f.name for f in fields(Trade)]",
        "(5, 5, ['symbol', 'qty', 'price', 'note'])"),
    'dataclass_slots_private': (
        'from dataclasses import dataclass, field\n@dataclass(slots=True)\nclass Acc:\n    name: str\n'
        '    _balance: float = 0.0\n    history: list = field(default_factory=list)\n'
        '    def deposit(self, x):\n        self._balance += x\n        self.history.append(x)\n'
        "        return self._balance\na = Acc('x')\na.deposit(5), a.deposit(2), a.history",
        '(5.0, 7.0, [5, 2])'),
    'dataclass_forward_ref_hints': (
        'from dataclasses import dataclass\nimport typing\n@dataclass\nclass Node:\n    value: int\n'
        "    children: 'list[Node]'\n    def total(self):\n"
        '        return self.value + sum(c.total() for c in self.children)\n'
        'n = Node(1, [Node(2, [])])\nh = typing.get_type_hints(Node)\n'
        "h['value'], h['children'], n.total()",
        "(<class 'int'>, list[__main__.Node], 3)"),
    'typing_constructs': (
        "import typing\nfrom typing import NamedTuple, TypedDict, Generic, TypeVar\nT = TypeVar('T')\n"
        'class Box(Generic[T]):\n    def __init__(self, item: T):\n        self.item = item\n'
        'class Pt(NamedTuple):\n    x: float\n    y: float = 0.0\nclass Cfg(TypedDict):\n    a: int\n'
        "def f(p: Pt, c: Cfg) -> 'Box[int]':\n    return Box(1)\n"
        'Box[int](3).item, Pt(1)._replace(y=2), sorted(typing.get_type_hints(f)), '
        'typing.get_type_hints(Cfg)',
        "(3, Pt(x=1, y=2), ['c', 'p', 'return'], {'a': <class 'int'>})"),
    'singledispatch': (
        "import functools\n@functools.singledispatch\ndef show(x):\n    return 'obj'\n@show.register\n"
        "def _(x: int):\n    return 'int'\n@show.register(list)\ndef _(x):\n    return 'list'\n"
        "show(1), show([1]), show('s')",
        "('int', 'list', 'obj')"),
    'singledispatchmethod': (
        'import functools\nclass Fmt:\n    @functools.singledispatchmethod\n    def fmt(self, x):\n'
        "        return 'any'\n    @fmt.register\n    def _(self, x: float):\n"
        "        return f'{x:.1f}'\nFmt().fmt(2.0), Fmt().fmt('a')",
        "('2.0', 'any')"),
    'total_ordering': (
        'import functools\n@functools.total_ordering\nclass Ver:\n'
        '    def __init__(self, major, minor):\n        self.major, self.minor = major, minor\n'
        '    def __eq__(self, o):\n        return (self.major, self.minor) == (o.major, o.minor)\n'
        '    def __lt__(self, o):\n        return (self.major, self.minor) < (o.major, o.minor)\n'
        'Ver(1, 2) <= Ver(1, 3), max([Ver(1, 0), Ver(2, 1)]).major',
        '(True, 2)'),
    'new_in_subclasses': (
        'class Meters(float):\n    def __new__(cls, v):\n        return super().__new__(cls, abs(v))\n'
        'class Tag(str):\n    def __new__(cls, s):\n        obj = str.__new__(cls, s.lower())\n'
        "        obj.raw = s\n        return obj\nt = Tag('AbC')\nfloat(Meters(-3)), t, t.raw",
        "(3.0, 'abc', 'AbC')"),
    'explicit_base_init': (
        'class Base:\n    def __init__(self, x):\n        self.x = x\nclass Child(Base):\n'
        '    def __init__(self, x, y):\n        Base.__init__(self, x)\n        self.y = y\n'
        'class MyErr(ValueError):\n    def __init__(self, msg, code):\n        super().__init__(msg)\n'
        "        self.code = code\ntry:\n    raise MyErr('bad', 7)\nexcept MyErr as e:\n"
        '    r = (str(e), e.code)\nc = Child(1, 2)\n(c.x, c.y), r',
        "((1, 2), ('bad', 7))"),
    'enum_custom_new_and_members': (
        "import enum\nclass Color(enum.Enum):\n    RED = 'r'\n    GREEN = 'g'\n"
        '    def __new__(cls, code):\n        obj = object.__new__(cls)\n        obj._value_ = code\n'
        "        obj.label = code.upper()\n        return obj\nE = enum.Enum('E', 'A B')\n"
        "Color('r').label, list(Color.__members__), E.B.value, E.__module__",
        "('R', ['RED', 'GREEN'], 2, '__main__')"),
    'abc_and_metaclass_checks': (
        'import abc, enum\nclass Shape(abc.ABC):\n    @abc.abstractmethod\n    def area(self): ...\n'
        'class Sq(Shape):\n    def __init__(self, s):\n        self._s = s\n    def area(self):\n'
        '        return self._s ** 2\nclass C(enum.Enum):\n    R = 1\n'
        'Sq(3).area(), isinstance(Sq(1), Shape), isinstance(Shape, abc.ABCMeta), type(C) is '
        'enum.EnumMeta',
        '(9, True, True, True)'),
    'collections_subclasses': (
        'import collections\nclass LRU(collections.OrderedDict):\n    def __init__(self, cap):\n'
        '        super().__init__()\n        self._cap = cap\n    def put(self, k, v):\n'
        '        self[k] = v\n        self.move_to_end(k)\n        if len(self) > self._cap:\n'
        '            self.popitem(last=False)\nl = LRU(2)\n'
        "l.put('a', 1); l.put('b', 2); l.put('c', 3)\nlist(l)",
        "['b', 'c']"),
    'json_encoder_subclass': (
        'import json, datetime, decimal\nclass Enc(json.JSONEncoder):\n    def default(self, o):\n'
        '        if isinstance(o, (datetime.date, decimal.Decimal)):\n            return str(o)\n'
        '        return super().default(o)\n'
        "json.dumps({'d': datetime.date(2024, 1, 2), 'x': decimal.Decimal('1.5')}, cls=Enc)",
        '\'{"d": "2024-01-02", "x": "1.5"}\''),
    'numpy_strings_format': (
        "import numpy as np\narr = np.array(['a', 'bb', 'ccc'])\ns = arr[1]\n"
        "f'{s}!', '{} and {}'.format(arr[0], arr[2]), '{0:>4}'.format(s), s.format(), "
        "np.str_('{0[k]}').format({'k': 1})",
        "('bb!', 'a and ccc', '  bb', np.str_('bb'), '1')"),
    'str_subclass_format': (
        'class Tpl(str):\n    def render(self, **kw):\n        return self.format(**kw)\n'
        '    def render_super(self, **kw):\n        return super().format_map(kw)\n'
        "t = Tpl('{a}-{b.real}')\n"
        't.render(a=1, b=2), t.render_super(a=3, b=4), type(t).format(t, a=5, b=6)',
        "('1-2', '3-4', '5-6')"),
    'context_manager_exit': (
        'import contextlib\nclass Timer:\n    def __enter__(self):\n        return self\n'
        '    def __exit__(self, et, ev, tb):\n        self.exc = et.__name__ if et else None\n'
        '        self.line = tb.tb_lineno if tb else None\n        return True\nwith Timer() as t:\n'
        "    1 / 0\n@contextlib.contextmanager\ndef tag(x):\n    yield x.upper()\nwith tag('a') as v:\n"
        '    pass\nt.exc, t.line, v',
        "('ZeroDivisionError', 10, 'A')"),
    'warnings_record': (
        'import warnings\nwith warnings.catch_warnings(record=True) as w:\n'
        "    warnings.simplefilter('always')\n    warnings.warn('careful', UserWarning)\n"
        'len(w), str(w[0].message), w[0].category.__name__',
        "(1, 'careful', 'UserWarning')"),
    'decimal_localcontext': (
        'import decimal, fractions\nwith decimal.localcontext() as ctx:\n    ctx.prec = 4\n'
        '    x = decimal.Decimal(1) / decimal.Decimal(3)\n'
        "str(x), fractions.Fraction('0.25').limit_denominator(10)",
        "('0.3333', Fraction(1, 4))"),
    'asyncio_tasks_queue': (
        'import asyncio\nasync def fetch(i):\n    await asyncio.sleep(0)\n    return i * 2\n'
        'async def main():\n    tasks = [asyncio.create_task(fetch(i)) for i in range(3)]\n'
        '    done = await asyncio.gather(*tasks)\n    async with asyncio.timeout(5):\n'
        '        await asyncio.sleep(0)\n    q = asyncio.Queue()\n    await q.put(1)\n'
        '    return done, await q.get()\nawait main()',
        '([0, 2, 4], 1)'),
    'numpy_linalg_results': (
        'import numpy as np\nrng = np.random.default_rng(42)\na = rng.normal(size=(50, 3))\n'
        'w, v = np.linalg.eigh(np.cov(a, rowvar=False))\nres = np.linalg.eigh(np.eye(2))\n'
        'w.shape, res._fields, np.unique(np.array([3, 1, 3]), return_counts=True)[1].tolist()',
        "((3,), ('eigenvalues', 'eigenvectors'), [1, 2])"),
    'copy_objects': (
        "import copy\nclass Cfg:\n    def __init__(self):\n        self.opts = {'a': [1]}\n"
        "c2 = copy.deepcopy(Cfg())\nc2.opts['a'].append(2)\nc3 = copy.copy(c2)\n"
        "c3.opts['a'], type(c3).__name__",
        "([1, 2], 'Cfg')"),
    'class_introspection': (
        "class P:\n    'A point.'\n    x: int = 0\n"
        'P.__doc__, P.__name__, P.__qualname__, P.__module__, P.__annotations__, type(P()).__name__',
        "('A point.', 'P', 'P', '__main__', {'x': <class 'int'>}, 'P')"),
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
    assert len(LEGIT) >= 85
