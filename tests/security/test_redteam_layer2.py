"""Red team: new routes through layer 2 (ordinary cells), each checked by its harm.

Routes the corpora did not take: the guarded ``getattr`` handed to library
code that calls it for the cell (pandas ``pipe``/``apply``, numpy
``frompyfunc``/``vectorize``, ``functools.reduce``, ``operator.call``,
``map``), file readers that take URLs or regexes (``np.fromregex``,
``pd.read_csv('file://...')``, ``pd.read_json``), classes that claim a
library's module (``namedtuple(module=...)``), ``dataclasses.replace`` with
dunder field names, and pandas' aggregation with a cell function. All held
when this file was written; each test checks the harm (`conftest.Harm`),
not the exception.
"""

from __future__ import annotations

import pytest

ROUTES: dict[str, str] = {
    "pipe_getattr_globals": "import pandas as pd\ndef f(): pass\n"
                            "print(pd.DataFrame({{'a': [1]}}).pipe(lambda d: getattr(f, '__globals__')))",
    "apply_getattr_builtins": "import pandas as pd\ndef f(): pass\n"
                              "print(pd.Series([f]).apply(getattr, args=('__builtins__',)))",
    "frompyfunc_getattr": "import numpy as np\ndef f(): pass\n"
                          "print(np.frompyfunc(getattr, 2, 1)(f, '__globals__'))",
    "vectorize_getattr": "import numpy as np\ndef f(): pass\n"
                         "print(np.vectorize(getattr, otypes=[object])(np.array([f], dtype=object), "
                         "'__globals__'))",
    "reduce_getattr_walk": "import functools\n"
                           "print(functools.reduce(getattr, ['__class__', '__base__', "
                           "'__subclasses__'], 1)())",
    "operator_call_getattr": "import operator\ndef f(): pass\n"
                             "print(operator.call(getattr, f, '__globals__'))",
    "map_getattr_code": "def f(): pass\nprint(list(map(getattr, [f], ['__code__'])))",
    "fromregex_canary": "import numpy as np\nprint(np.fromregex('{canary}', r'(.*)', [('a', 'U80')]))",
    "read_csv_file_url": "import pandas as pd\nprint(pd.read_csv('file://{canary}', header=None))",
    "read_json_file_url": "import pandas as pd\nprint(pd.read_json('file://{canary}'))",
    "namedtuple_claims_builtins": "import collections\n"
                                  "N = collections.namedtuple('N', 'a', module='builtins')\n"
                                  "setattr(N, '__array_interface__', {{'shape': (1,), "
                                  "'typestr': '<i8', 'data': (8, False)}})\n"
                                  "import numpy as np\nprint('ESCAPED', np.asarray(N(1)))",
    "namedtuple_claims_numpy_private": "import collections\n"
                                       "N = collections.namedtuple('N', 'a', module='numpy')\n"
                                       "n = N(1)\nprint(n._asdict(), getattr(n, '__class__')."
                                       "__init_subclass__.__self__.__subclasses__())",
    "dataclass_replace_dunder": "import dataclasses\n@dataclasses.dataclass\nclass P:\n"
                                "    x: int = 0\n"
                                "print('ESCAPED', dataclasses.replace(P(), **{{'__class__': int}}))",
    "agg_cell_function_frame": "import pandas as pd\n"
                               "print(pd.DataFrame({{'a': [1]}}).agg(lambda s: "
                               "getattr(s, '_mgr').__class__.__init__.__globals__['__builtins__']))",
}


@pytest.mark.parametrize("name", list(ROUTES))
def test_new_layer2_routes_do_no_harm(cave, harm, canary, name: str) -> None:
    cell = ROUTES[name].format(canary=canary.file)
    result = cave.execute(cell)
    harm.assert_none(result)
    # Refused (a policy violation, a guard's refusal or the audit hook), not merely lucky.
    assert result.error is not None, f"{name} ran to the end: {result.stdout[:500]}"
