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
    return pickle.dumps({"vars": {"note": variable}, "descriptions": {}, "types": []}, protocol=5)


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


@pytest.mark.xfail(strict=True, reason="red team: restore.loads_variable unpickles a snapshot's "
                   "variables with dill's unrestricted find_class: a taken session's snapshot "
                   "runs exec() in every worker that restores it, and that worker's policy "
                   "stops applying")
def test_a_taken_sessions_snapshot_cannot_rewrite_the_session_that_restores_it(taken: Runtime) -> None:
    patched = taken.execute(MARK + textwrap.dedent(f"""
        worker._handlers[messages.TakeSnapshot] = (
            lambda request, buffers, nested: messages.SnapshotBlob({_poisoned_blob()!r}, ()))
        raise RuntimeError('patched')
    """))
    assert patched.error is not None and "patched" in patched.error.message
    snap = taken.snapshot()
    restored = Runtime.restore(Snapshot.from_bytes(snap.to_bytes()), policy=strict_policy())
    try:
        refused = restored.execute("x = 'FORBIDDEN'")
        assert refused.error is not None and refused.error.kind == "policy", \
            "a cell the restoring host's policy refuses ran: the snapshot rewrote the worker"
    finally:
        restored.close()


@pytest.mark.xfail(strict=True, reason="red team: Snapshot.from_bytes lets RecursionError out of "
                   "json.loads (a deeply nested header), not a CaveliteError")
def test_a_corrupt_snapshot_header_is_a_cavelite_error() -> None:
    header = b"[" * 100_000
    data = Snapshot._MAGIC + len(header).to_bytes(4, "little") + header
    with pytest.raises(CaveliteError):
        Snapshot.from_bytes(data)
