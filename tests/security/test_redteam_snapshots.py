"""Red team: snapshots as a carrier from a taken session into the sessions that restore it.

`restore.py` says a snapshot's bytes are "as untrusted as any cell" on
restore. The outer layer is plain data, but each variable is then loaded
with dill's unpickler, whose ``find_class`` loads any global (and the audit
hook lets the runtime's loader do so): a variable can be ``exec(text)``
with the real builtins, in the restoring worker, before any of its cells
runs and outside its policy. Text without ``_``, ``format``, ``getter`` or
``caller`` passes the hook's ``compile`` check, and ``chr(95)`` spells the
rest. What a taken session put in its snapshot then rewrites every session
that restores it: here, the restoring host's own policy stops applying.

Also: a snapshot header the host cannot parse must be a `CaveliteError`.
"""

from __future__ import annotations

import pickle
import textwrap
from collections.abc import Iterator

import pytest
from fakes.compromise import MARK, PRELOAD

from cavelite import CaveliteError, Runtime, Snapshot
from cavelite.runtime.snapshot_format import FORMAT
from cavelite.security import Policy

# Runs in the restoring worker: every later cell is checked against the default policy
# instead of the one its host chose.
_PAYLOAD_CODE = textwrap.dedent("""
    import cavelite.runtime.worker as w
    from cavelite.security.policy import Policy
    u = chr(95)
    name = 'compile' + u + 'cell'
    orig = getattr(w, name)
    setattr(w, name, lambda code, policy, label, orig=orig, default=Policy.default():
            orig(code, default, label))
""")


def _poisoned_blob() -> bytes:
    code = _PAYLOAD_CODE.encode()
    variable = (b"\x80\x04cbuiltins\nexec\n" + b"X" + len(code).to_bytes(4, "little") + code
                + b"\x85R.")
    return pickle.dumps({"format": FORMAT, "vars": {"note": variable}, "descriptions": {},
                         "types": []}, protocol=5)


def strict_policy() -> Policy:
    return Policy.default().add_regex(r"FORBIDDEN", "this deployment refuses it")


@pytest.fixture(scope="module")
def taken() -> Iterator[Runtime]:
    runtime = Runtime(preload=PRELOAD, cell_timeout=10, request_timeout=5)
    yield runtime
    runtime.close()


def test_a_snapshot_restored_under_a_stricter_policy_keeps_it() -> None:
    """The control: an honest snapshot, restored under the strict policy, obeys it."""
    with Runtime() as rt:
        rt.execute("kept = 41")
        snap = rt.snapshot()
    with Runtime.restore(snap, policy=strict_policy()) as restored:
        assert restored.execute("kept + 1").value_repr == "42"
        refused = restored.execute("x = 'FORBIDDEN'")
        assert refused.error is not None and refused.error.kind == "policy"


def test_a_taken_sessions_snapshot_cannot_rewrite_the_session_that_restores_it(taken: Runtime) -> None:
    patched = taken.execute(MARK + textwrap.dedent(f"""
        worker._handlers[messages.TakeSnapshot] = (
            lambda request, buffers, nested: messages.SnapshotBlob({_poisoned_blob()!r}, ()))
        raise RuntimeError('patched')
    """))
    assert patched.error is not None and "patched" in patched.error.message
    snap = taken.snapshot()
    try:
        restored = Runtime.restore(Snapshot.from_bytes(snap.to_bytes()), policy=strict_policy())
    except CaveliteError as exc:
        # Refusing the poisoned snapshot whole is the other way of not running it.
        assert "snapshot was refused" in str(exc) and "exec" in str(exc), exc
        return
    try:
        refused = restored.execute("x = 'FORBIDDEN'")
        assert refused.error is not None and refused.error.kind == "policy", \
            "a cell the restoring host's policy refuses ran: the snapshot rewrote the worker"
    finally:
        restored.close()


def test_a_corrupt_snapshot_header_is_a_cavelite_error() -> None:
    header = b"[" * 100_000
    data = Snapshot._MAGIC + len(header).to_bytes(4, "little") + header
    with pytest.raises(CaveliteError):
        Snapshot.from_bytes(data)


def _forged_function_blob(filename: str, sources: dict[str, str]) -> bytes:
    """A snapshot holding ``f``: bytecode that reads ``__base__`` unguarded, under ``filename``."""
    import dill

    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile("def f():\n    return ().__class__.__base__.__name__\n", filename, "exec"),  # noqa: S102
         namespace)
    variable = dill.dumps(namespace["f"], recurse=True)
    return pickle.dumps({"format": FORMAT, "vars": {"f": variable}, "descriptions": {}, "types": [],
                         "sources": sources}, protocol=5)


def _restore_forged(taken: Runtime, blob: bytes) -> Runtime:
    patched = taken.execute(MARK + textwrap.dedent(f"""
        worker._handlers[messages.TakeSnapshot] = (
            lambda request, buffers, nested: messages.SnapshotBlob({blob!r}, ()))
        raise RuntimeError('patched')
    """))
    assert patched.error is not None and "patched" in patched.error.message
    return Runtime.restore(Snapshot.from_bytes(taken.snapshot().to_bytes()))


def test_a_cells_function_is_rebuilt_from_its_source_not_from_the_snapshots_bytecode(
        taken: Runtime) -> None:
    blob = _forged_function_blob("<cell-1>", {"<cell-1>": "def f():\n    return 'from source'\n"})
    with _restore_forged(taken, blob) as restored:
        assert restored.execute("f()").value_repr == "'from source'"
        # The restoring worker's own cells are numbered after the restored ones.
        assert restored.execute("def g():\n    return 2\ng() + len(f())").value_repr == "13"


def test_a_cells_function_whose_source_is_missing_or_refused_is_not_restored(taken: Runtime) -> None:
    for sources in ({}, {"<cell-1>": "def f():\n    return open('x')\n"}):
        with pytest.raises(CaveliteError, match="snapshot was refused"):
            _restore_forged(taken, _forged_function_blob("<cell-1>", sources)).close()


def test_code_generated_from_text_is_made_again_never_loaded(taken: Runtime) -> None:
    """Library-generated methods (file ``<string>``): a dataclass's are generated again from its
    fields; anywhere else such bytecode refuses the snapshot."""
    import dataclasses

    import dill

    with pytest.raises(CaveliteError, match="generated from text"):
        _restore_forged(taken, _forged_function_blob("<string>", {})).close()

    @dataclasses.dataclass
    class Pt:
        x: int

    forged = compile("def __init__(self, x):\n    self.x = ().__class__.__base__.__name__\n",
                     "<string>", "exec")
    Pt.__init__.__code__ = next(c for c in forged.co_consts if hasattr(c, "co_code"))
    Pt.__qualname__ = "Pt"
    Pt.__module__ = "__main__"
    assert Pt(1).x == "object"  # the forgery works where it was made
    blob = pickle.dumps({"format": FORMAT, "vars": {"Pt": dill.dumps(Pt, recurse=True)}, "descriptions": {},
                         "types": [], "sources": {}}, protocol=5)
    with _restore_forged(taken, blob) as restored:
        assert restored.execute("Pt(1).x, repr(Pt(2))").value_repr == "(1, 'Pt(x=2)')"

    # A slotted (frozen) one too: its __init__ is made again, and its __getstate__ and
    # __setstate__ (dataclasses' own, which set fields with object.__setattr__) never load.
    @dataclasses.dataclass(slots=True, frozen=True)
    class SPt:  # named as a cell's (also the class before slots, which dill keeps too)
        __module__ = "__main__"
        __qualname__ = "SPt"
        x: int

    forged = compile("def __create_fn__(__dataclass_builtins_object__):\n"
                     "    def __init__(self, x):\n"
                     "        __dataclass_builtins_object__.__setattr__(\n"
                     "            self, 'x', ().__class__.__base__.__name__)\n"
                     "    return __init__\n", "<string>", "exec")
    outer = next(c for c in forged.co_consts if hasattr(c, "co_code"))
    SPt.__init__.__code__ = next(c for c in outer.co_consts if hasattr(c, "co_code"))
    assert SPt(1).x == "object"  # the forgery works where it was made
    blob = pickle.dumps({"format": FORMAT, "vars": {"SPt": dill.dumps(SPt, recurse=True)},
                         "descriptions": {}, "types": [], "sources": {}}, protocol=5)
    with _restore_forged(taken, blob) as restored:
        assert restored.execute("SPt(1).x, SPt.__slots__").value_repr == "(1, ('x',))"
    setstate = pickle.dumps({"format": FORMAT, "descriptions": {}, "types": [], "sources": {},
                             "vars": {"s": dill.dumps(dataclasses._dataclass_setstate)}},
                            protocol=5)
    with pytest.raises(CaveliteError, match="generated from text"):
        _restore_forged(taken, setstate).close()


def test_the_hosts_code_in_a_snapshot_reaches_only_what_a_cells_code_could(taken: Runtime) -> None:
    """Code injected by value has no source here: its bytecode loads only if every name it
    reaches is public and it writes only its own attributes (``self.x``)."""
    with pytest.raises(CaveliteError, match="it reaches '__class__'"):
        _restore_forged(taken, _forged_function_blob("/srv/app/tools.py", {})).close()


HONEST = '''
import dataclasses, functools, collections, zoneinfo, datetime, re
import numpy as np
import pandas as pd
@dataclasses.dataclass
class Pt:
    x: int
    y: list = dataclasses.field(default_factory=list)
P = collections.namedtuple('P', 'a b')
@dataclasses.dataclass(frozen=True, order=True)
class Money:
    cents: int
    def __repr__(self):
        return f'{self.cents / 100:.2f}'
    def double(self):
        return Money(self.cents * 2)
cash = sorted([Money(5), Money(2)])
def outer(k):
    def inner(v):
        return v + k
    return inner
def deco(fn):
    @functools.wraps(fn)
    def wrapper(*a):
        return fn(*a) + 1
    return wrapper
@deco
def base(v):
    return v
class K:
    def __init__(self):
        self._hidden = 4
    @classmethod
    def make(cls):
        return cls()
    def peek(self):
        return self._hidden
pt, p, add2, k = Pt(1), P(1, 2), outer(2), K.make()
stamp = datetime.datetime(2020, 1, 1, tzinfo=zoneinfo.ZoneInfo('Europe/Paris'))
frame, pattern = pd.DataFrame({'a': np.arange(3)}), re.compile('a+')
'''


def test_what_cells_make_still_restores() -> None:
    with Runtime() as rt:
        assert rt.execute(HONEST).ok
        snap = rt.snapshot()
    with Runtime.restore(snap.to_bytes(), policy=strict_policy()) as back:
        money = back.execute("cash, cash[0] < cash[1], hash(cash[0]) == hash(Money(2)), "
                             "cash[1].double()")
        assert money.value_repr == "([0.02, 0.05], True, True, 0.10)", money
        frozen = back.execute("cash[0].cents = 3")
        assert frozen.error is not None and frozen.error.type == "FrozenInstanceError", frozen
        r = back.execute("(pt, Pt(2) == Pt(2), p.b, add2(1), base(1), base.__name__, k.peek(), "
                         "str(stamp.utcoffset()), int(frame['a'].sum()), pattern.match('aa')[0])")
        assert r.ok, r.error
        assert r.value_repr == "(Pt(x=1, y=[]), True, 2, 3, 2, 'base', 4, '1:00:00', 3, 'aa')"
