"""Values a cell makes that used to break the host, through ordinary cells (layer 2 intact).

Odd strings in reprs and errors, reprs and destructors that never return,
errors that cannot be pickled, annotations the host would evaluate, remote
calls that outlast a cell's timeout, module state planted before a reset,
functions that come back from a snapshot with the real builtins. Each test
checks that the session's state survived and the host did not run or wait
on what the cell chose.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cavelite import RequestTimeoutError, Runtime


@pytest.fixture(scope="module")
def rt() -> Iterator[Runtime]:
    runtime = Runtime(cell_timeout=10, request_timeout=2)
    yield runtime
    runtime.close()


@pytest.fixture
def kept(rt: Runtime) -> Iterator[Runtime]:
    assert rt.execute("kept = {'a': 1}").ok
    yield rt
    assert rt.execute("kept").value_repr == "{'a': 1}", "the session's state was lost"


ODD_TEXT = """
import numpy as np
class S(str):
    def __str__(self):
        return S('odd')
    def __repr__(self):
        return S('odd')
class Weird:
    def __repr__(self):
        return S('weird repr')
    def __len__(self):
        return 3
"""


@pytest.mark.parametrize("cell, check", [
    ("Weird()", lambda r: r.ok and r.value_repr == "weird repr"),
    ("np.str_('numpy text')", lambda r: r.ok and r.value_repr == "np.str_('numpy text')"),
    ("w = Weird()\nt = np.str_('x')\nd = {np.str_('k'): S('v')}", lambda r: r.ok),
    ("raise ValueError(S('boom'))", lambda r: r.error.type == "ValueError" and r.rolled_back),
    ("raise ValueError(np.str_('boom'))", lambda r: "boom" in r.error.message and r.rolled_back),
    ("e = ValueError('boom')\ne.remote_type = lambda: 0\nraise e",
     lambda r: r.rolled_back and r.error.type.startswith("<")),
    ("e = KeyError('k')\ne.remote_type = S('Forged')\nraise e", lambda r: r.rolled_back),
], ids=["str_subclass_repr", "numpy_str_repr", "odd_variables", "str_subclass_message",
        "numpy_message", "unpicklable_error_attribute", "str_subclass_error_type"])
def test_odd_strings_are_plain_text_to_the_host(kept: Runtime, cell: str, check) -> None:
    assert kept.execute(ODD_TEXT).ok
    result = kept.execute(cell)
    assert check(result), result
    listed = {v.name: v for v in kept.variables()}  # summaries of the odd values still list
    assert all(type(v.summary) is str and type(v.type_name) is str for v in listed.values())


SPINNERS = """
class SlowRepr:
    def __repr__(self):
        while True:
            pass
class Stubborn:
    # Swallows the worker's own time limit: only the host's deadline stops it.
    def __repr__(self):
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
"""


def test_a_repr_that_never_returns_does_not_stall_listings(kept: Runtime) -> None:
    assert kept.execute(SPINNERS + "slow = SlowRepr()").ok
    shown = kept.execute("slow")
    assert shown.ok and "took too long" in shown.value_repr
    assert "took too long" in {v.name: v for v in kept.variables()}["slow"].summary
    kept.delete("slow")


def test_a_repr_that_swallows_the_time_limit_meets_the_hosts_deadline(kept: Runtime) -> None:
    assert kept.execute(SPINNERS).ok
    made = kept.execute("stubborn = Stubborn()", timeout=3)
    assert made.error.kind == "timeout" and made.rolled_back  # its summary never returned
    assert kept.execute("'stubborn' in dir()").value_repr == "False"


@pytest.mark.parametrize("setup, request_", [
    ("class Z:\n    def __getstate__(self):\n        while True:\n            try:\n"
     "                while True: pass\n            except BaseException: pass\nz = Z()",
     lambda rt: rt.retrieve("z", trusted=True)),
    ("class Z:\n    def __getstate__(self):\n        while True:\n            try:\n"
     "                while True: pass\n            except BaseException: pass\nz = Z()",
     lambda rt: rt.snapshot()),
], ids=["retrieve_getstate", "snapshot_getstate"])
def test_requests_that_run_cell_code_have_a_deadline(kept: Runtime, setup: str, request_) -> None:
    assert kept.execute(setup).ok
    with pytest.raises(RequestTimeoutError) as caught:
        request_(kept)
    assert not caught.value.variables_lost  # the checkpoint took over with the state as it was
    kept.reset()  # the spinning object goes with the worker that held it
    kept.execute("kept = {'a': 1}")


def test_a_destructor_that_never_returns_does_not_stall_delete(kept: Runtime) -> None:
    assert kept.execute("class Slow:\n    def __del__(self):\n        while True:\n            pass\n"
                        "slow = Slow()").ok
    kept.delete("slow")  # the worker bounds the destructor itself
    assert kept.execute("'slow' in dir()").value_repr == "False"
    assert kept.execute("class Z:\n    def __del__(self):\n        while True:\n            try:\n"
                        "                while True: pass\n            except BaseException: pass\n"
                        "z = Z()").ok
    # It swallows the interruption (usually: one can land outside its try); then the host's
    # deadline stops it, and the checkpoint serves the session as it was.
    try:
        kept.delete("z")
    except RequestTimeoutError as exc:
        assert not exc.variables_lost
        assert kept.execute("'z' in dir()").value_repr == "True"
    else:
        assert kept.execute("'z' in dir()").value_repr == "False"
    kept.reset()
    kept.execute("kept = {'a': 1}")


def test_the_host_never_evaluates_annotations_a_cell_chose(kept: Runtime, tmp_path: Path) -> None:
    marker = tmp_path / "host-evaluated"

    def make_tool(annotation: str):
        """A host factory whose product carries text from the cell (as tools do)."""
        def tool(x):
            return x
        tool.__annotations__ = {"x": annotation, "return": annotation}
        return tool

    kept.inject("make_tool", make_tool)
    evil = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    result = kept.execute(f"t = make_tool({evil!r})\nt(5)")
    assert result.ok and result.value_repr == "5", result.error
    assert not marker.exists(), "the host evaluated a string annotation a cell chose"


def test_remote_calls_count_against_the_cells_timeout(kept: Runtime) -> None:
    calls = []
    never = threading.Event()

    def slow_tool() -> int:
        """Takes longer than the whole cell may."""
        calls.append(1)
        never.wait(1.5)
        return len(calls)

    kept.inject("slow_tool", slow_tool)
    result = kept.execute("for _ in range(5):\n    slow_tool()", timeout=1.0)
    assert result.error.kind == "timeout" and result.rolled_back
    assert len(calls) == 1, "the cell went on calling the host after its deadline"


PLANTED = {
    "decimal precision": ("import decimal\ndecimal.getcontext().prec = 3",
                          "import decimal\ndecimal.getcontext().prec", "28"),
    "warnings filter": ("import warnings\nwarnings.simplefilter('error')",
                        "import warnings\nwarnings.warn('w')\n'passed'", "'passed'"),
    "numpy error state": ("import numpy as np\nnp.seterr(all='raise')",
                          "import numpy as np\nnp.geterr()['divide']", "'warn'"),
    "pandas option": ("import pandas as pd\npd.set_option('display.max_rows', 2)",
                      "import pandas as pd\npd.get_option('display.max_rows')", "60"),
    "random seed": ("import random\nrandom.seed(7)\nfirst = random.random()",
                    "import random\nrandom.seed(7)\nrandom.random() == 0.32383276483316237", "True"),
    "background task": ("import asyncio\nasync def forever():\n    while True:\n"
                        "        await asyncio.sleep(0.01)\n"
                        "task = asyncio.create_task(forever())\nawait asyncio.sleep(0)",
                        "import asyncio\nawait asyncio.sleep(0)\nlen(asyncio.all_tasks())", "1"),
}


@pytest.mark.parametrize("name", list(PLANTED))
def test_reset_gives_a_worker_as_fresh_as_a_new_session(rt: Runtime, name: str) -> None:
    plant, probe, fresh = PLANTED[name]
    planted = rt.execute(plant)
    assert planted.ok, planted.error
    old = rt.pid
    rt.reset()
    assert rt.pid != old
    result = rt.execute(probe)
    assert result.value_repr == fresh, (result.value_repr, result.error)


def test_restored_functions_run_with_the_caves_builtins() -> None:
    with Runtime() as rt:
        _restore_and_probe(rt)


def _restore_and_probe(rt: Runtime) -> None:
    rt.execute("def peek(obj, name):\n    return getattr(obj, name)\n"
               "def total(xs):\n    return sum(xs)")
    blob = rt.snapshot().to_bytes()
    with Runtime.restore(blob) as back:
        assert back.execute("total([1, 2])").value_repr == "3"
        assert back.execute("peek([], 'append')").ok
        escaped = back.execute("peek(print, '__self__')")
        assert not escaped.ok and "protected" in escaped.error.message, escaped
        assert back.execute("peek.__globals__ is None").error is not None
