"""The runtime through its public API, with real processes and real kills."""

from __future__ import annotations

import asyncio
import decimal
import os
import threading

import numpy as np
import pandas as pd
import pytest

from cavelite import (
    CaveliteError,
    CaveUsageError,
    Runtime,
    RuntimeClosedError,
    Snapshot,
    UnpicklableValueError,
    UntrustedTypeError,
    VariableNotFoundError,
)


def test_state_persists_across_cells(rt: Runtime) -> None:
    assert rt.execute("counter = 1").ok
    assert rt.execute("counter += 41").ok
    r = rt.execute("counter")
    assert r.ok and r.value_repr == "42"


def test_stdout_value_and_stderr_are_captured(rt: Runtime) -> None:
    r = rt.execute("import warnings\nprint('hello')\nwarnings.warn('careful')\n6 * 7")
    assert r.ok, r.error
    assert r.stdout == "hello\n"
    assert "UserWarning: careful" in r.stderr
    assert r.value_repr == "42"


def test_library_output_is_captured(rt: Runtime) -> None:
    r = rt.execute("import pandas as pd\npd.DataFrame({'amount': [1, 2]}).info()")
    assert "amount" in r.stdout and "non-null" in r.stdout


def test_changed_and_deleted_variables_are_reported(rt: Runtime) -> None:
    rt.execute("keep = [1]\ngone = 2")
    r = rt.execute("keep.append(2)\ndel gone\nnew = 'x'")
    names = {v.name for v in r.changed}
    assert names == {"keep", "new"}
    assert r.deleted == ("gone",)


def test_exception_rolls_back_and_reports_cell_lines(rt: Runtime) -> None:
    rt.execute("balance = 100")
    r = rt.execute("balance -= 30\nitems = [1, 2]\n\nitems[5]")
    assert not r.ok and r.rolled_back
    assert r.error.kind == "exception" and r.error.type == "IndexError"
    assert r.error.line == 4
    assert "line 4" in r.error.traceback and "items[5]" in r.error.traceback
    assert "IndexError" in r.error.for_model()
    assert rt.execute("balance").value_repr == "100"
    assert rt.execute("'items' in dir()").value_repr == "False"


def test_in_place_mutation_is_rolled_back(rt: Runtime) -> None:
    rt.execute("import pandas as pd\nframe = pd.DataFrame({'a': [1, 2, 3]})\nlog = []")
    r = rt.execute("frame['a'] *= 10\nlog.append('x')\nraise ValueError('nope')")
    assert r.error.type == "ValueError" and r.error.message == "nope"
    assert rt.execute("frame['a'].tolist(), log").value_repr == "([1, 2, 3], [])"


def test_syntax_error_is_reported_and_nothing_runs(rt: Runtime) -> None:
    r = rt.execute("x = (1,\nprint('ran')")
    assert r.error.kind == "exception" and r.error.type == "SyntaxError"
    assert r.stdout == ""


def test_policy_violation_never_runs(rt: Runtime) -> None:
    rt.execute("side = 0")
    r = rt.execute("side = 1\nimport os\nos.system('true')")
    assert r.error.kind == "policy"
    assert r.error.violations and r.error.violations[0].line == 2
    assert "os" in r.error.for_model()
    assert rt.execute("side").value_repr == "0"


@pytest.mark.parametrize(
    "code",
    [
        "while True:\n    pass",
        "import time\ntime.sleep(60)",
        "x = 10**10**8",
        "import numpy as np\nwhile True:\n    np.linalg.svd(np.ones((200, 200)))",
    ],
    ids=["python-loop", "sleep", "huge-int", "numpy-loop"],
)
def test_timeout_preempts_and_rolls_back(rt: Runtime, code: str) -> None:
    rt.execute("before_timeout = 'intact'")
    pid = rt.pid
    r = rt.execute("before_timeout = 'changed'\n" + code, timeout=0.3)
    assert not r.ok and r.error.kind == "timeout"
    assert "0.3" in r.error.message
    assert rt.pid != pid  # the checkpoint took over
    assert rt.execute("before_timeout").value_repr == "'intact'"


def test_memory_bomb_is_reported_as_memory() -> None:
    with Runtime(memory_limit_mb=256) as small:
        small.execute("data = [1, 2, 3]")
        r = small.execute("data.append(4)\nhog = bytearray(2 * 1024**3)")
        assert r.error.kind == "memory"
        r = small.execute("import numpy as np\nhog = np.ones((1024, 1024, 512))")
        assert r.error.kind == "memory"
        assert small.execute("data").value_repr == "[1, 2, 3]"


def test_output_over_budget_keeps_head_tail_and_full_text() -> None:
    with Runtime(max_output_chars=1000) as small:
        r = small.execute("for i in range(2000):\n    print('line', i)")
        assert r.ok and r.stdout_truncated
        assert r.stdout.startswith("line 0\n") and r.stdout.rstrip().endswith("line 1999")
        assert "characters cut" in r.stdout and f"cell_outputs[{r.output_index}]" in r.stdout
        assert len(r.stdout) < 1300
        full = small.execute(f"len(cell_outputs[{r.output_index}].splitlines())")
        assert full.value_repr == "2000"


def test_print_flood_hits_the_hard_limit() -> None:
    with Runtime(hard_output_limit=100_000) as small:
        small.execute("n = 1")
        r = small.execute("n = 2\nwhile True:\n    print('spam' * 100)")
        assert r.error.kind == "output_limit"
        assert small.execute("n").value_repr == "1"


def _abort() -> None:
    os.abort()


def _segfault() -> None:
    import faulthandler

    faulthandler._sigsegv()


@pytest.mark.parametrize("fn", [_abort, _segfault], ids=["abort", "segfault"])
def test_crash_in_copied_function_rolls_back(fn) -> None:  # type: ignore[no-untyped-def]
    with Runtime() as local:
        local.inject("boom", fn, remote=False)
        local.execute("survivor = {'a': 1}")
        r = local.execute("survivor['b'] = 2\nboom()")
        assert not r.ok and r.error.kind == "crash"
        assert "Fatal Python error" in r.error.message
        assert local.execute("survivor").value_repr == "{'a': 1}"


def test_non_atomic_mode_keeps_partial_effects() -> None:
    with Runtime(atomic=False) as loose:
        loose.execute("items = []")
        r = loose.execute("items.append(1)\nraise RuntimeError('half way')")
        assert r.error.type == "RuntimeError" and not r.rolled_back
        assert loose.execute("items").value_repr == "[1]"


def test_non_atomic_timeout_interrupts_python_code_and_keeps_state() -> None:
    with Runtime(atomic=False) as loose:
        loose.execute("x = 1")
        r = loose.execute("x = 2\nwhile True:\n    pass", timeout=0.3)
        assert r.error.kind == "timeout" and "partial effects were kept" in r.error.message
        assert loose.execute("x").value_repr == "2"


def _deaf() -> None:
    """Stands in for a C call that never checks for signals."""
    import signal
    import time

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    while True:
        time.sleep(1)


def test_non_atomic_timeout_kills_code_deaf_to_interrupts_and_restarts() -> None:
    with Runtime(atomic=False) as loose:
        loose.inject("deaf", _deaf, remote=False)
        loose.execute("x = 1")
        r = loose.execute("deaf()", timeout=0.3)
        assert r.error.kind == "timeout" and "variables were lost" in r.error.message
        assert loose.execute("'x' in dir()").value_repr == "False"


# --- classes and the code models write ------------------------------------------------------

MODEL_CODE = '''
from dataclasses import dataclass, field
from enum import Enum

class Status(Enum):
    OPEN = "open"
    DONE = "done"

@dataclass
class Task:
    title: str
    status: Status = Status.OPEN
    tags: list = field(default_factory=list)

class Board:
    def __init__(self, name):
        self.name = name
        self._tasks = []
        self.count = 0

    def add(self, task):
        self._tasks.append(task)
        self.count += 1
        return self

    def __len__(self):
        return len(self._tasks)

    def __repr__(self):
        return f"Board({self.name!r}, {len(self)} tasks)"

    def __eq__(self, other):
        return isinstance(other, Board) and self.name == other.name

class Urgent(Board):
    def __init__(self, name):
        super().__init__(name.upper())

b = Urgent("ops").add(Task("deploy")).add(Task("fix", Status.DONE, ["x"]))
counts = {}
for t in b._tasks:
    counts[t.status.value] = counts.get(t.status.value, 0) + 1
    counts[t.status.value] += 0
summary = f"{b!r} {type(b).__name__} {len(b)} {sorted(counts.items())}"
squares = {n: n * n for n in range(5) if n % 2 == 0}
gen = sum(x for x in range(4))
fn = lambda a, *rest, **kw: (a, rest, kw)
def outer():
    total = 0
    def inner(v):
        nonlocal total
        total += v
        return total
    return inner
acc = outer(); acc(2); acc(3)
try:
    {}["missing"]
except KeyError as exc:
    caught = repr(exc)
match b.count:
    case 2:
        matched = "two"
    case _:
        matched = "other"
summary, squares, gen, fn(1, 2, k=3), acc(0), caught, matched
'''


def test_code_models_write_runs(rt: Runtime) -> None:
    r = rt.execute(MODEL_CODE)
    assert r.ok, r.error and r.error.for_model()
    assert "Board('OPS', 2 tasks) Urgent 2 [('done', 1), ('open', 1)]" in r.value_repr
    assert "{0: 0, 2: 4, 4: 16}" in r.value_repr
    assert "(1, (2,), {'k': 3})" in r.value_repr and "5" in r.value_repr
    assert "KeyError('missing')" in r.value_repr and "'two'" in r.value_repr


def test_top_level_await(rt: Runtime) -> None:
    r = rt.execute("import asyncio\nasync def twice(x):\n    await asyncio.sleep(0)\n"
                   "    return 2 * x\nawaited = await twice(21)\nawaited")
    assert r.ok and r.value_repr == "42"


def test_private_names_of_library_objects_stay_private(rt: Runtime) -> None:
    r = rt.execute("import pandas as pd\npd.DataFrame()._mgr")
    assert not r.ok and "private" in r.error.message


# --- copy in, remote, retrieve ------------------------------------------------------------------

def notify(message: str, level: int = 1) -> str:
    """Send a notification to the on-call phone."""
    if message == "boom":
        raise ValueError("the pager refused the message")
    return f"sent {message!r} at level {level}"


class Thermostat:
    """A device that must stay in the host."""

    def __init__(self) -> None:
        self.target = 20.0
        self.calls = 0

    def set_target(self, value: float) -> float:
        self.calls += 1
        if value > 30:
            raise RuntimeError("too hot")
        self.target = value
        return self.target

    def zone(self, name: str) -> Zone:
        return Zone(name, self)


class Zone:
    def __init__(self, name: str, owner: Thermostat) -> None:
        self.name = name
        self.owner = owner

    def describe(self) -> str:
        return f"zone {self.name} at {self.owner.target}"


def test_remote_function_keeps_name_signature_doc_and_raises(rt: Runtime) -> None:
    rt.inject("notify", notify)
    r = rt.execute("print(notify('hi', level=2))\nnotify.__name__, notify.__doc__")
    assert r.stdout == "sent 'hi' at level 2\n"
    assert "notify" in r.value_repr and "on-call" in r.value_repr
    info = {i.name: i for i in rt.injected()}["notify"]
    assert info.kind == "function" and info.signature == "(message: str, level: int = 1) -> str"
    r = rt.execute("try:\n    notify('boom')\nexcept ValueError as e:\n    msg = str(e)\nmsg")
    assert r.value_repr == "'the pager refused the message'"
    r = rt.execute("notify('boom')")
    assert r.error.type == "ValueError"


def test_remote_calls_in_a_loop(rt: Runtime) -> None:
    calls = []
    rt.inject("record", calls.append)
    r = rt.execute("for i in range(10_000):\n    record(i)")
    assert r.ok
    assert len(calls) == 10_000 and calls[-1] == 9999


def test_remote_function_returns_frames_and_arrays_by_value(rt: Runtime) -> None:
    calls: list[str] = []

    def load(region: str) -> pd.DataFrame:
        """A tool that hands the cell a table."""
        calls.append(region)
        return pd.DataFrame({"region": [region] * 3, "amount": [1.5, 2.5, 3.0]})

    rt.inject("load", load)
    rt.inject("grid", lambda: np.arange(6.0).reshape(2, 3))
    result = rt.execute("df = load('East')\ng = grid()\ntotal = float(df.amount.sum() + g.sum())\n"
                        "type(df).__name__")
    assert result.ok, result.for_model()
    assert result.value_repr == "'DataFrame'"
    assert calls == ["East"]  # one call in the host: rebuilding the frame did not call back
    assert rt.retrieve("total") == 22.0
    pd.testing.assert_frame_equal(rt.retrieve("df"), load("East"))


def test_remote_object_methods_attributes_and_nesting(rt: Runtime) -> None:
    device = Thermostat()
    rt.inject("thermo", device, remote=True, description="living room")
    r = rt.execute("thermo.set_target(22.5)\nz = thermo.zone('north')\nz.describe(), thermo.target")
    assert r.ok, r.error
    assert r.value_repr == "('zone north at 22.5', 22.5)"
    assert device.target == 22.5 and device.calls == 1
    r = rt.execute("thermo.set_target(99)")
    assert r.error.type == "RuntimeError" and "too hot" in r.error.message
    r = rt.execute("thermo.target = 5")
    assert not r.ok and device.target == 22.5
    info = {i.name: i for i in rt.injected()}["thermo"]
    assert info.kind == "object" and "set_target" in info.methods


def test_remote_calls_can_reenter_the_runtime(rt: Runtime) -> None:
    def peek(name: str):
        return rt.retrieve(name)

    rt.inject("peek", peek)
    r = rt.execute("secret_number = 7\nstored = peek('counter')\nstored")
    assert r.ok and r.value_repr == "42"


def test_async_remote_function_runs_on_the_callers_loop() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()

        async def fetch(key: str) -> str:
            assert asyncio.get_running_loop() is loop
            await asyncio.sleep(0)
            return key.upper()

        async with Runtime() as local:
            await local.ainject("fetch", fetch)
            r = await local.aexecute("value = await fetch('abc')\nvalue")
            assert r.ok, r.error
            assert (await local.aretrieve("value")) == "ABC"
            return (await local.avariables())[0].name

    assert asyncio.run(main()) == "value"


def test_retrieve_native_objects(rt: Runtime) -> None:
    frame = pd.DataFrame({"region": ["n", "s", "n"], "amount": [1.5, 2.0, 3.5]})
    rt.inject("sales", frame, description="three sales")
    rt.execute("by_region = sales.groupby('region')['amount'].sum()\n"
               "arr = np.arange(6).reshape(2, 3) if False else __import__ and None" if False else
               "import numpy as np\nby_region = sales.groupby('region')['amount'].sum()\n"
               "arr = np.arange(6).reshape(2, 3)\nnested = {'a': [1, (2, 3)], 'when': None}\n"
               "import decimal, datetime\nmoney = decimal.Decimal('10.05')\n"
               "day = datetime.date(2024, 2, 29)")
    pd.testing.assert_series_equal(rt.retrieve("by_region"), frame.groupby("region")["amount"].sum())
    assert np.array_equal(rt.retrieve("arr"), np.arange(6).reshape(2, 3))
    assert rt.retrieve("nested") == {"a": [1, (2, 3)], "when": None}
    assert rt.retrieve("money") == decimal.Decimal("10.05")
    info = {v.name: v for v in rt.variables()}["sales"]
    assert info.description == "three sales" and "3 rows x 2 columns" in info.summary


def test_retrieve_refuses_cell_made_types_unless_trusted(rt: Runtime) -> None:
    rt.execute("class Point:\n    def __init__(self, x):\n        self.x = x\npt = Point(3)")
    with pytest.raises(UntrustedTypeError, match="trusted=True"):
        rt.retrieve("pt")
    assert rt.retrieve("pt", trusted=True).x == 3
    assert rt.execute("pt.x").value_repr == "3"


def test_injected_types_round_trip(rt: Runtime) -> None:
    from dataclasses import dataclass

    @dataclass
    class Order:
        id: int
        amount: float

    rt.inject_type(Order)
    rt.execute("orders = [Order(i, i * 1.5) for i in range(3)]")
    orders = rt.retrieve("orders")
    assert orders == [Order(0, 0.0), Order(1, 1.5), Order(2, 3.0)]
    assert type(orders[0]) is Order


def test_unpicklable_values_give_clear_errors(rt: Runtime) -> None:
    with pytest.raises(UnpicklableValueError, match="'lock'.*remote=True"):
        rt.inject("lock", threading.Lock(), remote=False)
    rt.inject("lock", threading.Lock(), remote=True)
    assert rt.execute("lock.locked()").value_repr == "False"
    rt.execute("gen = (i for i in range(3))")
    with pytest.raises(UnpicklableValueError, match="'gen'"):
        rt.retrieve("gen")
    assert rt.execute("next(gen)").value_repr == "0"


def test_unknown_names_and_bad_names(rt: Runtime) -> None:
    with pytest.raises(VariableNotFoundError):
        rt.retrieve("does_not_exist")
    with pytest.raises(VariableNotFoundError):
        rt.delete("does_not_exist")
    with pytest.raises(CaveUsageError):
        rt.inject("not a name", 1)
    with pytest.raises(CaveUsageError):
        rt.inject("_getattr_", 1)


def test_delete_and_reset(fresh_rt: Runtime) -> None:
    fresh_rt.inject("ping", notify)
    fresh_rt.execute("a = 1\nb = 2")
    fresh_rt.delete("a")
    assert [v.name for v in fresh_rt.variables()] == ["b"]
    fresh_rt.reset()
    assert fresh_rt.variables() == []
    assert fresh_rt.execute("ping('x')").ok  # injected remotes survive a reset


def test_environment_and_workdir_are_private(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAVELITE_SECRET_TOKEN", "do-not-leak")

    def look() -> tuple[dict[str, str], str]:
        import os

        return dict(os.environ), os.getcwd()

    with Runtime() as local:
        local.inject("look", look, remote=False)
        local.execute("env, cwd = look()")
        env, cwd = local.retrieve("env"), local.retrieve("cwd")
        assert env == {}
        assert os.path.basename(cwd).startswith("cavelite-") and cwd != os.getcwd()
        assert os.path.isdir(cwd)
    assert not os.path.exists(cwd)


def test_snapshot_round_trip() -> None:
    with Runtime() as first:
        first.inject("notify", notify, description="pages the on-call engineer")
        first.execute("import pandas as pd\nframe = pd.DataFrame({'a': [1, 2]})\n"
                      "def double(v):\n    return v * 2\n"
                      "class Box:\n    def __init__(self, v):\n        self.v = v\nbox = Box(5)")
        snap = first.snapshot()
    data = snap.to_bytes()
    with pytest.raises(CaveUsageError, match="notify"):
        Runtime.restore(data)
    with pytest.raises(CaveUsageError, match="not a cavelite snapshot"):
        Runtime.restore(b"garbage")
    with Runtime.restore(data, remotes={"notify": notify}) as second:
        assert {i.name: i.description for i in second.injected()}["notify"] == "pages the on-call engineer"
        r = second.execute("double(box.v), frame['a'].sum(), notify('back')")
        assert r.ok, r.error
        assert r.value_repr == "(10, np.int64(3), \"sent 'back' at level 1\")"


def test_a_snapshot_made_by_an_older_cavelite_is_refused_up_front() -> None:
    """Snapshots before format 3 carry no cell sources (restoring compiles a cell's functions
    again from them): refused with the reason, not as a snapshot the loader cannot rebuild."""
    import json
    import pickle

    import dill

    def double(v):
        return v * 2

    double.__module__ = "__main__"
    # What an older cavelite wrote: the worker's blob without "format" or "sources", under
    # the CAVESNAP2 header.
    old_blob = pickle.dumps({"vars": {"double": dill.dumps(double, recurse=True), "n": pickle.dumps(1)},
                             "descriptions": {}, "types": []}, protocol=5)
    header = json.dumps({"remotes": [], "descriptions": {}}).encode()
    old = b"CAVESNAP2" + len(header).to_bytes(4, "little") + header + old_blob
    for attempt in (lambda: Snapshot.from_bytes(old), lambda: Runtime.restore(old)):
        with pytest.raises(CaveUsageError, match="made by an older cavelite: .*take a new snapshot"):
            attempt()
    # The same blob in a Snapshot made by hand reaches the worker, which refuses it as well.
    with pytest.raises(CaveliteError, match="made by an older cavelite: .*take a new snapshot"):
        Runtime.restore(Snapshot(old_blob))


def test_slotted_dataclasses_restore_from_a_snapshot() -> None:
    """@dataclass(slots=True) (frozen too, with a default factory and a method) made in a cell:
    the restored classes are slotted dataclasses again and their instances keep their fields."""
    with Runtime() as first:
        r = first.execute(
            "import dataclasses\n"
            "@dataclasses.dataclass(slots=True)\n"
            "class Point:\n"
            "    x: int\n"
            "    tags: list = dataclasses.field(default_factory=list)\n"
            "    def double(self):\n"
            "        return self.x * 2\n"
            "@dataclasses.dataclass(slots=True, frozen=True, order=True)\n"
            "class Money:\n"
            "    cents: int = 5\n"
            "p, m = Point(3, ['a']), Money(7)\n"
            "before = (p.double(), repr(m))")
        assert r.ok, r.error
        blob = first.snapshot().to_bytes()
    with Runtime.restore(blob) as back:
        r = back.execute("after = (p, p.double(), Point(1) == Point(1), Point.__slots__, m, "
                         "Money() < Money(7), hash(Money(2)) == hash(Money(2)), before)\nafter")
        assert r.ok, r.error
        assert r.value_repr == ("(Point(x=3, tags=['a']), 6, True, ('x', 'tags'), Money(cents=7), "
                                "True, True, (6, 'Money(cents=7)'))")
        assert back.retrieve("before") == (6, "Money(cents=7)")
        assert back.execute("p.x = 4\np.double()").value_repr == "8"
        assert back.execute("p.other = 1").error.type == "AttributeError"  # slotted: no __dict__
        assert back.execute("m.cents = 1").error.type == "FrozenInstanceError"


def test_many_runtimes_at_once_are_independent() -> None:
    runtimes = [Runtime() for _ in range(20)]
    try:
        for i, each in enumerate(runtimes):
            assert each.execute(f"me = {i}").ok
        assert [each.execute("me").value_repr for each in runtimes] == [str(i) for i in range(20)]
        assert len({each.pid for each in runtimes}) == 20
    finally:
        for each in runtimes:
            each.close()


def test_close_leaves_no_processes_or_descriptors() -> None:
    from fakes.processes import worker_pids

    Runtime().close()  # the zygote and its imports are warm before counting
    fds_before = set(os.listdir("/proc/self/fd"))
    pids_before = worker_pids()
    runtimes = [Runtime() for _ in range(4)]
    runtimes[0].execute("while True:\n    pass", timeout=0.2)
    runtimes[1].inject("boom", _abort, remote=False)
    runtimes[1].execute("boom()")
    for each in runtimes:
        each.close()
    each.close()  # twice is fine
    with pytest.raises(RuntimeClosedError):
        each.execute("1")
    assert set(os.listdir("/proc/self/fd")) <= fds_before | {"3"}
    from fakes.processes import wait_gone

    assert not wait_gone(worker_pids() - pids_before)


def test_garbage_collected_runtime_is_cleaned_up() -> None:
    import gc

    from fakes.processes import worker_pids

    before = worker_pids()
    local = Runtime()
    local.execute("x = 1")
    pid = local.pid
    del local
    gc.collect()
    assert pid not in worker_pids() - before


def test_rollback_keeps_changes_made_between_cells(fresh_rt: Runtime) -> None:
    fresh_rt.execute("a = 1")
    fresh_rt.inject("b", 2)
    fresh_rt.execute("c = 3")
    fresh_rt.delete("a")
    r = fresh_rt.execute("b = 99\nraise ValueError")
    assert r.rolled_back
    assert sorted(v.name for v in fresh_rt.variables()) == ["b", "c"]
    assert fresh_rt.retrieve("b") == 2


def _forge_host_message(kind: str) -> None:
    """Runs in the worker (copied in): writes a forged message straight onto the host socket."""
    import os
    import pickle
    import stat
    import struct

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch /tmp/cavelite-forged-canary",))

    body = pickle.dumps(Evil()) if kind == "pickle" else b"\x00garbage" * 10
    for fd in range(3, 64):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.write(fd, struct.pack("<QI", len(body), 0) + body)
        except OSError:
            pass


@pytest.mark.parametrize("kind", ["pickle", "garbage"])
def test_forged_worker_messages_are_refused_and_the_runtime_recovers(kind: str) -> None:
    canary = "/tmp/cavelite-forged-canary"
    if os.path.exists(canary):
        os.remove(canary)
    with Runtime() as local:
        local.inject("forge", _forge_host_message, remote=False)
        r = local.execute(f"forge({kind!r})")
        assert not r.ok and r.error.type == "ProtocolError"
        assert not os.path.exists(canary)
        assert local.execute("1 + 1").value_repr == "2"


def test_an_interrupted_request_is_abandoned_cleanly(fresh_rt: Runtime) -> None:
    class Stop(BaseException):
        pass

    def tool() -> None:
        raise Stop  # like KeyboardInterrupt arriving while the host waits for a cell

    fresh_rt.inject("tool", tool)
    fresh_rt.execute("kept = 1")
    with pytest.raises(Stop):
        fresh_rt.execute("kept = 2\ntool()\nkept = 3")
    assert fresh_rt.execute("kept").value_repr == "1"
    assert fresh_rt.execute("kept + 1").value_repr == "2"


def test_cancelling_an_async_execute_leaves_a_usable_runtime() -> None:
    async def main() -> str | None:
        async with Runtime() as local:
            await local.aexecute("n = 1")
            task = asyncio.ensure_future(local.aexecute("import time\ntime.sleep(0.5)\nn = 2"))
            await asyncio.sleep(0)  # let the cell start
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return (await local.aexecute("n")).value_repr

    assert asyncio.run(main()) in ("1", "2")


def test_injected_enums_and_type_descriptions(fresh_rt: Runtime) -> None:
    import enum
    from dataclasses import dataclass

    class Tier(enum.IntEnum):
        FREE = 0
        PRO = 1

    @dataclass
    class Customer:
        name: str
        tier: Tier = Tier.FREE

        def upgrade(self) -> None:
            self.tier = Tier.PRO

    fresh_rt.inject_type(Tier)
    fresh_rt.inject_type(Customer, description="a customer")
    r = fresh_rt.execute("c = Customer('ada')\nc.upgrade()\nbest = max(Tier)\nc.tier == Tier.PRO, int(best)")
    assert r.value_repr == "(True, 1)"
    assert fresh_rt.retrieve("best") is Tier.PRO
    customer = fresh_rt.retrieve("c")
    assert customer == Customer("ada", Tier.PRO) and customer.tier is Tier.PRO
    info = {i.name: i for i in fresh_rt.injected()}
    assert info["Customer"].kind == "type" and "name: str" in info["Customer"].signature
    assert "upgrade" in info["Customer"].methods and info["Customer"].description == "a customer"
    assert info["Tier"].methods == ("FREE", "PRO")


def test_the_worker_reports_its_confinement(rt: Runtime) -> None:
    assert {"rlimits", "audit-hook"} <= set(rt.confinement)
    from cavelite.security import limits

    if limits.landlock_abi() > 0:  # the kernel supports it: it must have been applied
        assert "landlock" in rt.confinement


def test_a_killed_zygote_is_replaced_and_live_sessions_go_on(fresh_rt: Runtime) -> None:
    import signal

    from cavelite.runtime.zygote import Zygote

    fresh_rt.execute("alive = 'yes'")
    zygote = Zygote.shared(fresh_rt.preload)
    zygote.process.send_signal(signal.SIGKILL)
    zygote.process.wait()
    with Runtime() as newcomer:  # a new zygote is started for it
        assert newcomer.execute("1 + 1").value_repr == "2"
    assert Zygote.shared(fresh_rt.preload) is not zygote
    assert fresh_rt.execute("alive").value_repr == "'yes'"
    r = fresh_rt.execute("alive = 'changed'\nraise ValueError")  # checkpoints still work
    assert r.rolled_back and fresh_rt.execute("alive").value_repr == "'yes'"


def test_host_objects_handed_to_cells_are_released_when_dropped(fresh_rt: Runtime) -> None:
    import gc
    import weakref

    handed: list[weakref.ref[Zone]] = []
    device = Thermostat()

    def reading(i: int) -> Zone:
        zone = Zone(f"z{i}", device)  # a new host object each call: sent as a reference
        handed.append(weakref.ref(zone))
        return zone

    fresh_rt.inject("reading", reading)
    r = fresh_rt.execute("kept = reading(-1)\nfor i in range(3000):\n    reading(i).describe()")
    assert r.ok, r.error
    fresh_rt.execute("kept.describe()")  # a later request carries the last releases
    gc.collect()
    alive = [ref for ref in handed if ref() is not None]
    assert len(alive) <= 2 and handed[0]() is not None  # `kept` is still held by the cell
    r = fresh_rt.execute("del kept\nboom = reading(0)\nraise ValueError")  # rolled back
    fresh_rt.execute("1")
    gc.collect()
    assert handed[0]() is not None  # the checkpoint still holds `kept`
    assert fresh_rt.execute("kept.describe()").value_repr == "'zone z-1 at 20.0'"


def test_a_directory_opted_in_is_readable_and_nothing_else(tmp_path) -> None:
    from cavelite import Policy

    data = tmp_path / "in" / "sales.csv"
    data.parent.mkdir()
    data.write_text("region,amount\nEast,3\nWest,4\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("CANARY-OPT-IN")
    with Runtime(policy=Policy.default().allow_read_dirs(str(data.parent))) as opted:
        r = opted.execute(f"import pandas as pd\nsales = pd.read_csv({str(data)!r})\nsales['amount'].sum()")
        assert r.ok and r.value_repr == "np.int64(7)"
        r = opted.execute(f"import pandas as pd\npd.read_csv({str(secret)!r})")
        assert not r.ok and "CANARY" not in r.for_model()
        from cavelite.security import limits

        assert "landlock" in opted.confinement or limits.landlock_abi() == 0
    with Runtime() as default:  # the spare path: no directory opted in
        r = default.execute(f"import pandas as pd\npd.read_csv({str(data)!r})")
        assert not r.ok and "East" not in r.for_model()


def test_a_forked_host_leaves_the_parents_runtime_alone(fresh_rt: Runtime) -> None:
    import gc

    from cavelite.runtime import zygote

    fresh_rt.execute("mine = 'parent'")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # a pre-fork server's child: it must not use or stop the parent's worker
        code = 0
        try:
            fresh_rt.execute("mine = 'child'")
            code = 1
        except CaveUsageError:
            pass
        zygote._shutdown()  # what its atexit would do
        gc.collect()
        os.write(write_end, bytes([code]))
        os._exit(0)
    os.close(write_end)
    assert os.read(read_end, 1) == b"\x00"
    os.close(read_end)
    os.waitpid(pid, 0)
    assert fresh_rt.execute("mine").value_repr == "'parent'"


def test_a_preload_that_does_not_import_is_a_clear_error() -> None:
    from cavelite import CaveRuntimeError

    with pytest.raises(CaveRuntimeError, match="no_such_module_xyz"):
        Runtime(preload=("numpy", "no_such_module_xyz"))
    with Runtime(preload=()) as bare:  # no preload at all: numpy is imported on first use
        assert bare.execute("import numpy as np\nint(np.arange(4).sum())").value_repr == "6"


def test_worker_and_checkpoint_both_killed_means_a_fresh_worker(fresh_rt: Runtime) -> None:
    import signal

    from fakes.processes import descendants, wait_gone

    fresh_rt.inject("notify", notify)
    fresh_rt.execute("doomed = 1")
    fresh_rt.variables()  # served after the next checkpoint is forked: it exists now
    from pathlib import Path

    checkpoints = {pid for pid, name in descendants().items() if name == "cave-checkpoint"
                   and Path(f"/proc/{pid}/stat").read_text().split()[3] == str(fresh_rt.pid)}
    assert checkpoints
    for pid in checkpoints:  # first: a checkpoint that outlived its worker would take over
        os.kill(pid, signal.SIGKILL)
    assert not wait_gone(checkpoints)
    os.kill(fresh_rt.pid, signal.SIGKILL)
    assert not wait_gone({fresh_rt.pid})
    r = fresh_rt.execute("doomed")
    assert r.error.kind == "crash" and "variables were lost" in r.error.message
    assert fresh_rt.execute("'doomed' in dir()").value_repr == "False"
    assert fresh_rt.execute("notify('back')").ok  # injected remotes are bound again


def test_a_request_after_both_died_raises_once_then_the_runtime_works(fresh_rt: Runtime) -> None:
    import signal
    from pathlib import Path

    from fakes.processes import descendants, wait_gone

    from cavelite import WorkerDiedError

    fresh_rt.execute("x = 1")
    fresh_rt.variables()  # served after the next checkpoint is forked: it exists now
    checkpoints = {pid for pid, name in descendants().items() if name == "cave-checkpoint"
                   and Path(f"/proc/{pid}/stat").read_text().split()[3] == str(fresh_rt.pid)}
    for pid in checkpoints:  # first: a checkpoint that outlived its worker would take over
        os.kill(pid, signal.SIGKILL)
    assert not wait_gone(checkpoints)
    os.kill(fresh_rt.pid, signal.SIGKILL)
    assert not wait_gone({fresh_rt.pid})
    with pytest.raises(WorkerDiedError):
        fresh_rt.variables()
    assert fresh_rt.variables() == []  # a fresh worker answers


def test_summaries_are_bounded_and_exact(fresh_rt: Runtime) -> None:
    fresh_rt.execute("big = {i: float(i) for i in range(100_000)}\nmixed = [1, 'a', 2.0] * 1000\n"
                     "tags = {'x'}\ntext = 'z' * 5000\nscores = {'ann': 81, 'bob': 74}")
    info = {v.name: v for v in fresh_rt.variables()}
    assert info["big"].summary.startswith("100000 keys [0, 1, 2, 3, 4, 5, 6, 7, ...] values: float")
    assert info["mixed"].summary == "3000 items of float|int|str"
    assert info["tags"].summary == "1 item: {'x'}"  # short containers of plain values show them
    assert info["scores"].summary == "2 keys: {'ann': 81, 'bob': 74}"
    assert info["text"].summary.startswith("str, 5000 chars: 'zzz") and len(info["text"].summary) < 120


def test_asyncio_run_runs_on_the_workers_own_loop(rt: Runtime) -> None:
    r = rt.execute("import asyncio\nasync def main(x):\n    await asyncio.sleep(0)\n    return x * 2\n"
                   "asyncio.run(main(21))")
    assert r.ok and r.value_repr == "42", r.error
    inside = rt.execute("await asyncio.sleep(0)\nasyncio.run(main(1))")
    assert not inside.ok and "await main()" in inside.error.message
    assert rt.execute("await main(2)").value_repr == "4"


def test_cells_cannot_start_threads(rt: Runtime) -> None:
    r = rt.execute("import asyncio\nawait asyncio.to_thread(sum, [1, 2])")
    assert not r.ok and "to_thread" in r.error.message


def test_main_is_the_cell_namespace(rt: Runtime) -> None:
    # typing, dataclasses and pickle look a cell class's module up in sys.modules: they
    # must find the cell's globals, not the interpreter's own __main__.
    r = rt.execute("import typing\nclass P:\n    x: 'int'\n    y: 'list[int]'\n"
                   "typing.get_type_hints(P)")
    assert r.ok and r.value_repr == "{'x': <class 'int'>, 'y': list[int]}", r.error
    leak = rt.execute("import typing\nclass Q:\n    x: 'open'\ntyping.get_type_hints(Q)")
    assert not leak.ok, leak


def test_interrupt_stops_a_running_cell_from_another_thread(fresh_rt: Runtime) -> None:
    started = threading.Event()
    fresh_rt.inject("started", lambda: started.set())
    fresh_rt.execute("kept = 'yes'")
    results = []
    runner = threading.Thread(target=lambda: results.append(
        fresh_rt.execute("kept = 'no'\nstarted()\nwhile True:\n    pass", timeout=None)))
    runner.start()
    assert started.wait(30)
    assert fresh_rt.interrupt()
    runner.join(30)
    assert results and results[0].error.kind == "interrupted" and results[0].rolled_back
    assert fresh_rt.execute("kept").value_repr == "'yes'"
    assert not fresh_rt.interrupt()  # nothing runs now


def test_a_hosts_sessions_die_with_it_even_mid_cell(tmp_path) -> None:
    import subprocess
    import sys

    from fakes.processes import wait_gone

    script = tmp_path / "host.py"
    script.write_text(
        "import os, sys, threading\n"
        "from cavelite import Runtime\n"
        "rt = Runtime(cell_timeout=None)\n"
        "ready = threading.Event()\n"
        "rt.inject('ready', lambda: ready.set())\n"
        "threading.Thread(target=rt.execute, args=('ready()\\nwhile True:\\n    pass',),\n"
        "                 daemon=True).start()\n"
        "ready.wait(60)\n"
        "print(rt.pid, flush=True)\n"
        "os._exit(1)  # no atexit, no close: as if the host were killed\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         cwd=root, env={**os.environ, "PYTHONPATH": root})
    worker = int(out.stdout.split()[0])
    assert not wait_gone({worker}, timeout=30), "the worker outlived its host"


def test_a_zygote_leaves_no_private_directory_behind(tmp_path) -> None:
    import subprocess
    import sys

    from fakes.processes import wait_gone

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("from cavelite import Runtime\n"
            "from cavelite.runtime.zygote import Zygote\n"
            "for _ in range(3):\n    with Runtime() as rt:\n        rt.execute('1')\n"
            "kept = Runtime()  # never closed: the host exits with it open\n"
            "print(*(z.pid for z in Zygote._instances.values()))\n")
    # TMPDIR reaches the zygote: its workers' directories land here, apart from other tests'.
    out = subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=root,
                         capture_output=True, text=True,
                         env={**os.environ, "TMPDIR": str(tmp_path)}).stdout
    assert not wait_gone({int(pid) for pid in out.split()}, timeout=30)
    assert [p for p in os.listdir(tmp_path) if p.startswith("cavelite-")] == []
