"""Red team: a taken worker against the host's decoders (message heads and values).

The host decodes every message head with the C unpickler (no globals) and
every value (retrieve, remote-call arguments) with the restricted decoder.
Both run to the end before any field, type or size check, in the host,
holding the GIL and outside every deadline. These attacks send tiny pickles
that cost the host far more than the documented bound (one value may take
about twice the worker's memory limit; every request answers by its
deadline), hand it a numpy array whose object field points where the worker
chose, or make it open a path the worker named.

Attacks that may freeze or kill a host run in a host process of their own
(`fakes.hosts.run_host`); each test checks the harm (memory held, time the
host spent, whether it survived, what the worker learnt), not an exception.
"""

from __future__ import annotations

import pickle
import textwrap
from collections.abc import Iterator

import numpy as np
import pytest
from fakes.compromise import MARK, PRELOAD
from fakes.hosts import run_host

from cavelite import Runtime

MEMORY_LIMIT_MB = 16
# What one value may take on the wire for that limit (WorkerConfig.transfer_limit).
TRANSFER_LIMIT_MB = 2 * MEMORY_LIMIT_MB + 256


def _host_with_taken_worker(attack: str, then: str) -> str:
    """A host script: a taken session runs ``attack`` (raw code), then the host does ``then``."""
    return textwrap.dedent(f"""
        from cavelite import Runtime
        with Runtime(preload=PRELOAD, memory_limit_mb={MEMORY_LIMIT_MB}, cell_timeout=30,
                     request_timeout=2) as rt:
            assert rt.execute("precious = [1, 2, 3]").ok
            patched = rt.execute(MARK + {attack!r})
            reset_peak()
            before, started = peak_mb(), time.monotonic()
    """) + textwrap.indent(textwrap.dedent(then) + textwrap.dedent("""
        report(grew_mb=peak_mb() - before, seconds=time.monotonic() - started,
               outcome=outcome, precious=rt.execute("precious").value_repr)
    """), "    ")


# --- message heads: decoded in full before any field is checked ------------------------------

# EMPTY_SET is one byte; the set it makes is 216. A list of them, sent as a message.
SET_FLOOD = "send_frame(b'\\x80\\x05(' + b'\\x8f' * 3_000_000 + b'l.')\n"


@pytest.mark.xfail(strict=True, reason="red team: a 3 MB frame of EMPTY_SET opcodes makes the "
                   "host hold ~650 MB (220x) before wire.decode checks the head's shape")
def test_a_small_frame_cannot_make_the_host_hold_more_than_a_value_may() -> None:
    run = run_host(_host_with_taken_worker("", f"""
        r = rt.execute(MARK + {SET_FLOOD!r})
        outcome = r.error.type if r.error else "ok"
    """), timeout=60)
    assert run.finished, run.stderr[-2000:]
    report = run.report
    assert report["precious"] == "[1, 2, 3]"
    assert report["grew_mb"] < TRANSFER_LIMIT_MB, \
        f"a 3 MB frame made the host hold {report['grew_mb']} MB"


# 100,000 integers that all hash to 0: inserting them is quadratic (about 100 s in C).
COLLIDING_DICT = textwrap.dedent("""
    M = (1 << 61) - 1
    items = b''.join(pickle.dumps(k * M, protocol=2)[2:-1] + b'N' for k in range(1, 100_001))
    send_frame(b'\\x80\\x05X\\x04\\x00\\x00\\x00done}(' + items + b'u)\\x87.')
""")


@pytest.mark.xfail(strict=True, reason="red team: a 1.3 MB message head holding a dict of "
                   "colliding integers keeps the host in PlainUnpickler for minutes, GIL held, "
                   "past every deadline")
def test_a_message_head_cannot_keep_the_host_past_its_deadline() -> None:
    run = run_host(_host_with_taken_worker("", f"""
        r = rt.execute(MARK + {COLLIDING_DICT!r}, timeout=2)
        outcome = r.error.type if r.error else "ok"
    """), timeout=12)
    assert run.finished, "the host was still decoding one message head after 12 s " \
                         "(cell timeout 2 s); it was killed"
    assert run.report["seconds"] < 8


# --- values: the restricted decoder calls allowlisted constructors with the worker's args ------

def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _text(s: str) -> bytes:
    data = s.encode()
    return b"X" + len(data).to_bytes(4, "little") + data


def _int(n: int) -> bytes:
    return pickle.dumps(n, protocol=2)[2:-1]


BOMBS = {
    # 30 bytes: bytearray(600 MB), zero-filled in the host.
    "bytearray": b"\x80\x05" + _global("builtins", "bytearray") + _int(600_000_000) + b"\x85R.",
    # 46 bytes: list(range(20M)), 20 million int objects (~780 MB).
    "list_of_range": b"\x80\x05" + _global("builtins", "list") + _global("builtins", "range")
    + _int(20_000_000) + b"\x85R\x85R.",
}
CPU_BOMBS = {
    # 40 bytes: Fraction(Decimal('1e9999999')) computes 10**9999999 (~17 s in C, GIL held).
    "fraction_of_decimal": b"\x80\x05" + _global("fractions", "Fraction") + _global("decimal", "Decimal")
    + _text("1e9999999") + b"\x85R\x85R.",
    # 520 KB: Decimal(2**4194304 - 1), a quadratic base conversion in libmpdec (~40 s).
    "decimal_of_bigint": b"\x80\x05" + _global("decimal", "Decimal") + _int((1 << (1 << 22)) - 1)
    + b"\x85R.",
}


def _retrieve_answers(payload: bytes) -> str:
    """Raw code: every retrieve is answered with this value pickle."""
    return ("worker._handlers[messages.Retrieve] = "
            f"lambda request, buffers, nested: messages.Value('x', {payload!r})\n"
            "raise RuntimeError('patched')\n")


_RETRIEVE = """
try:
    value = rt.retrieve("anything")
    outcome = "retrieved " + type(value).__name__
    del value
except Exception as exc:
    outcome = type(exc).__name__
"""


@pytest.mark.xfail(strict=True, reason="red team: a 30-46 byte Value pickle makes the host "
                   "allocate 600-780 MB in the restricted decoder (bytearray(n), list(range(n)))")
@pytest.mark.parametrize("name", list(BOMBS))
def test_a_tiny_value_cannot_make_the_host_allocate_without_bound(name: str) -> None:
    run = run_host(_host_with_taken_worker(_retrieve_answers(BOMBS[name]), _RETRIEVE), timeout=60)
    assert run.finished, run.stderr[-2000:]
    report = run.report
    assert report["precious"] == "[1, 2, 3]"
    assert report["grew_mb"] < TRANSFER_LIMIT_MB, \
        f"a {len(BOMBS[name])}-byte value made the host hold {report['grew_mb']} MB ({report['outcome']})"


@pytest.mark.xfail(strict=False, reason="red team: Fraction(Decimal('1e9999999')) and "
                   "Decimal(huge int) keep the host in C for 17-40 s per retrieve, past "
                   "request_timeout, with the GIL held")
@pytest.mark.parametrize("name", list(CPU_BOMBS))
def test_a_value_cannot_keep_the_host_past_the_request_deadline(name: str) -> None:
    run = run_host(_host_with_taken_worker(_retrieve_answers(CPU_BOMBS[name]), _RETRIEVE),
                   timeout=10)
    assert run.finished, "the host was still decoding one value after 10 s " \
                         "(request_timeout 2 s); it was killed"
    assert run.report["seconds"] < 8


# --- a numpy array whose object field holds the worker's pointer --------------------------------

class _ForgedDtype:
    """np.dtype('V8') whose state names an object field but whose flags say it holds none."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (np.dtype, ("V8", False, True),
                (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0))


class _ForgedArray:
    """One element of that dtype whose bytes are a pointer chosen by the worker."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        from numpy._core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, (0,), b"b"),
                (1, (1,), _ForgedDtype(), False, (0x4141414141414141).to_bytes(8, "little")))


FORGED_ARRAY = pickle.dumps(_ForgedArray(), protocol=5)


@pytest.mark.xfail(strict=True, reason="red team: the restricted decoder rebuilds a numpy dtype "
                   "whose object field is flagged as plain bytes; the array's 'object' is the "
                   "worker's pointer, and the host segfaults when it prints the value")
def test_a_retrieved_array_cannot_carry_a_pointer_the_worker_chose() -> None:
    run = run_host(_host_with_taken_worker(_retrieve_answers(FORGED_ARRAY), """
        try:
            value = rt.retrieve("anything")
            outcome = "retrieved"
            print(repr(value), flush=True)  # what a careless host does with a retrieved value
        except Exception as exc:
            outcome = type(exc).__name__
    """), timeout=60)
    assert run.returncode != -11, "the host died of SIGSEGV printing a retrieved array"
    assert run.finished and run.returncode == 0, run.stderr[-2000:]
    assert run.report["outcome"] in ("UntrustedTypeError", "ProtocolError"), run.report


@pytest.mark.xfail(strict=True, reason="red team: decode.loads_value returns an array whose "
                   "dtype has an object field but hasobject=False (reading it dereferences "
                   "0x4141414141414141)")
def test_the_forged_dtype_is_refused_by_the_decoder_itself() -> None:
    """The same pickle, decoded in this process (its data is never touched here)."""
    from cavelite.security import decode

    try:
        value = decode.loads_value(FORGED_ARRAY)
    except Exception:  # noqa: BLE001 - any refusal will do
        return
    dtype = value.dtype
    del value  # never shown: pytest would repr it, and reading it dereferences the pointer
    hidden = [name for name, (field, *_rest) in (dtype.fields or {}).items() if field.hasobject]
    says_objects = bool(dtype.hasobject)
    assert not hidden or says_objects, f"object fields {hidden} in a dtype that says it holds none"


# --- the host opens a path the worker named -------------------------------------------------------

def _timestamp_in(tz: str) -> bytes:
    """Remote-call arguments ((Timestamp('2020-01-01', tz=tz),), {}) as a pickle."""
    stamp = (_global("pandas", "Timestamp") + b"(" + _text("2020-01-01") + b"t}" + _text("tz")
             + _text(tz) + b"s\x92")
    return b"\x80\x05" + stamp + b"\x85}\x86."


class Tools:
    """A harmless remote tool."""

    def echo(self, value: object) -> str:
        return "called"


@pytest.fixture(scope="module")
def taken() -> Iterator[Runtime]:
    runtime = Runtime(preload=PRELOAD, cell_timeout=10, request_timeout=2)
    runtime.inject("tools", Tools(), remote=True)
    yield runtime
    runtime.close()


@pytest.mark.xfail(strict=True, reason="red team: Timestamp(tz='dateutil//path') makes the host "
                   "open any path the worker names (dateutil.tz.gettz); the call's error tells "
                   "the worker whether the file exists (an oracle on the host's file system)")
def test_a_value_cannot_make_the_host_open_a_path(taken: Runtime, canary) -> None:
    probes = {"canary": f"dateutil/{canary.file}", "missing": f"dateutil/{canary.dir}/no-such-file"}
    lines = []
    for name, tz in probes.items():
        result = taken.execute(MARK + textwrap.dedent(f"""
            ref = worker.space.ns['tools']._cave_ref
            send(messages.Call("call", ref, "echo", {_timestamp_in(tz)!r}))
            reply, _ = worker.recv()
            print({name!r}, reply.ok, reply.error_type, reply.message[:200])
        """))
        assert result.ok, result.error
        lines.append(result.stdout.strip())
    assert taken.execute("1 + 1").value_repr == "2"
    existing, missing = (line.split(" ", 1)[1] for line in lines)
    assert existing == missing, f"the worker told an existing host file from a missing one: {lines}"
