"""Resource exhaustion, attacks on the host through retrieve and remote proxies, and the
lower layers holding on their own (as if every layer above had been defeated)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from cavelite import Runtime
from cavelite.errors import CaveRuntimeError, UnpicklableValueError, UntrustedTypeError

# --- exhausting resources ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> Runtime:
    runtime = Runtime(cell_timeout=3, memory_limit_mb=256, max_output_chars=1000,
                      hard_output_limit=200_000)
    yield runtime
    runtime.close()


RESOURCE_ATTACKS = {
    "memory_bomb_bytes": ("x = bytearray(10 ** 10)", {"memory", "exception"}),
    "memory_bomb_list": ("x = [0] * (10 ** 10)", {"memory", "exception"}),
    "memory_bomb_growth": ("x = []\nwhile True:\n    x.append(' ' * 10 ** 6)", {"memory"}),
    "memory_bomb_numpy": ("import numpy as np\nx = np.ones((10 ** 6, 10 ** 4))", {"memory", "exception"}),
    "deep_recursion": ("def f(n):\n    return f(n + 1)\nf(0)", {"exception"}),
    "nested_repr": ("x = []\nfor _ in range(200000):\n    x = [x]\nx", {"ok"}),
    "huge_int": ("x = 10 ** 10 ** 8", {"timeout"}),
    "busy_loop": ("while True:\n    pass", {"timeout"}),
    "print_flood": ("while True:\n    print('x' * 10000)", {"output_limit"}),
    "thread_bomb": ("import asyncio, time\n"
                    "await asyncio.gather(*[asyncio.to_thread(time.sleep, 30) for _ in range(5000)])",
                    {"timeout", "exception", "crash", "memory"}),
    "fork_bomb_asyncio": ("import asyncio\nwhile True:\n"
                          "    await asyncio.create_subprocess_exec('true')", {"exception", "policy"}),
}


@pytest.mark.parametrize("name", list(RESOURCE_ATTACKS))
def test_resource_attack_is_bounded(small: Runtime, make_harm, name: str) -> None:
    code, kinds = RESOURCE_ATTACKS[name]
    harm = make_harm(small)
    assert small.execute("survivor = 41").ok
    result = small.execute(code)
    assert (result.error.kind if result.error else "ok") in kinds, result.error
    harm.assert_none(result)
    # A failed cell rolled back and the session goes on.
    after = small.execute("survivor + 1")
    assert after.ok and after.value_repr == "42"
    assert len(result.stdout) < 5000


# --- attacks on the host ----------------------------------------------------------------------

# If any of these methods ran in the host, the host's stdout (captured) would say so.
EVIL_CLASS = """
class Evil:
    def __setstate__(self, state):
        print('HOST-RAN-CELL-CODE')
    def __eq__(self, other):
        print('HOST-RAN-CELL-CODE')
        return False
    __hash__ = None
    def __del__(self):
        print('HOST-RAN-CELL-CODE')
evil = Evil()
"""

RETRIEVE_ATTACKS = {
    "cell_instance": "value = Evil()",
    "cell_class": "value = Evil",
    "object_array": "import numpy as np\nvalue = np.array([Evil(), 1], dtype=object)",
    "dataframe_object_column": "import pandas as pd\nvalue = pd.DataFrame({'a': [Evil()]})",
    "partial_of_builtin": "import functools\nvalue = functools.partial(print, 'ESCAPED')",
    "nested_in_dict": "value = {'ok': [1, 2, {'deep': Evil()}]}",
    "cell_function": "def value():\n    return 'ESCAPED'",
}


@pytest.mark.parametrize("name", list(RETRIEVE_ATTACKS))
def test_retrieve_never_runs_cell_code_in_host(cave: Runtime, canary, make_harm, capfd,
                                               name: str) -> None:
    harm = make_harm(cave)
    setup = cave.execute(EVIL_CLASS)
    assert setup.ok, setup.error
    made = cave.execute(RETRIEVE_ATTACKS[name])
    assert made.ok, made.error
    with pytest.raises((UntrustedTypeError, UnpicklableValueError, CaveRuntimeError)):
        cave.retrieve("value")
    summary = cave.variables()  # summaries are made in the worker, never here
    harm.assert_none(made, summary)
    assert "HOST-RAN-CELL-CODE" not in capfd.readouterr().out


def test_remote_tool_never_receives_cell_objects(cave: Runtime, canary, make_harm) -> None:
    harm = make_harm(cave)
    calls = []

    def notify(message):
        """Record a message."""
        calls.append(message)
        return len(calls)

    cave.inject("notify", notify)
    assert cave.execute(EVIL_CLASS).ok
    result = cave.execute("notify(Evil())")
    assert not result.ok
    assert calls == []  # the host function never ran with the cell's object
    assert cave.execute("notify('plain text')").value_repr == "1"
    harm.assert_none(result)


REMOTE_TAMPERING = {
    "proxy_globals": "print(notify.__globals__)",
    "proxy_globals_dynamic": "print(getattr(notify, '__glob' + 'als__'))",
    "proxy_closure_dynamic": "print(getattr(notify, '__clos' + 'ure__'))",
    "proxy_private_signature": "print(getattr(notify, '__cave_signature__'))",
    "proxy_code_swap": "setattr(notify, '__co' + 'de__', None)",
    "proxy_attribute_write": "notify.calls = []",
    "remote_object_write": "store.items = 'ESCAPED'",
    "remote_object_setattr": "setattr(store, 'items', 'ESCAPED')",
    "remote_object_channel": "print(store._cave_channel)",
    "remote_object_channel_dynamic": "print(getattr(store, '_cave_' + 'channel'))",
    "remote_object_subclass": "class Sub(type(store)):\n    pass\nprint(Sub._cave_channel.__get__(store))",
    "remote_object_dunder": "print(store.__class__.__init__.__globals__)",
}


class Store:
    """A host object exposed by proxy."""

    def __init__(self) -> None:
        self.items = ["a"]

    def count(self) -> int:
        return len(self.items)


@pytest.mark.parametrize("name", list(REMOTE_TAMPERING))
def test_remote_proxies_cannot_be_tampered_with(cave: Runtime, canary, make_harm, name: str) -> None:
    harm = make_harm(cave)
    store = Store()
    cave.inject("store", store, remote=True)
    cave.inject("notify", lambda m: m)
    result = cave.execute(REMOTE_TAMPERING[name])
    assert not result.ok
    harm.assert_none(result)
    assert store.items == ["a"]
    assert cave.execute("store.count()").value_repr == "1"


# --- lower layers on their own ------------------------------------------------------------------

_LAYER_PRELUDE = """
import os, socket, subprocess, sys
from cavelite.security import audit, limits
results = {}
def attempt(name, fn):
    try:
        out = fn()
        results[name] = "DONE " + repr(out)[:200]
    except BaseException as exc:
        results[name] = "refused " + type(exc).__name__
"""

_LAYER_ATTACKS = """
attempt("read", lambda: open(CANARY).read())
attempt("read_os", lambda: os.read(os.open(CANARY, os.O_RDONLY), 100))
attempt("write", lambda: open(os.path.join(os.path.dirname(CANARY), "new"), "w").write("x"))
attempt("socket", lambda: socket.socket().connect(("127.0.0.1", 9)))
attempt("exec", lambda: subprocess.run(["/bin/cat", CANARY], capture_output=True).stdout)
attempt("system", lambda: os.system("cat " + CANARY + " > /dev/null") or "ran")
attempt("environ", lambda: open("/proc/%d/environ" % os.getppid(), "rb").read())
print(repr(results))
"""


def _run_layer(script: str, canary, secret: str) -> dict[str, str]:
    code = _LAYER_PRELUDE + f"CANARY = {str(canary.file)!r}\n" + textwrap.dedent(script) \
        + _LAYER_ATTACKS
    env = {"CAVELITE_CANARY": os.environ["CAVELITE_CANARY"], "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env, cwd=os.path.dirname(os.path.dirname(
                              os.path.dirname(os.path.abspath(__file__)))))
    assert proc.returncode == 0, proc.stderr
    assert secret not in proc.stdout
    assert os.environ["CAVELITE_CANARY"] not in proc.stdout
    assert os.listdir(canary.dir) == ["secret.txt"] or "new" not in os.listdir(canary.dir)
    return eval(proc.stdout.strip().splitlines()[-1])  # noqa: S307 - our own subprocess's repr


def test_audit_hook_alone_holds_with_its_module_rewritten(canary, file_secret) -> None:
    """Layer 3 without layers 1, 2 and 4, after code that escaped layer 2 rewrote every name
    the hook's module, ``os.path`` and ``builtins`` hold (there is no flag left to flip)."""
    results = _run_layer("""
        import builtins, os.path
        audit.install(confine=False)
        for name, value in list(vars(audit).items()):
            if isinstance(value, (tuple, frozenset)):
                setattr(audit, name, type(value)())
            elif callable(value) and not isinstance(value, type) and name != "install":
                setattr(audit, name, lambda *a, **k: True)
        os.path.realpath = lambda p, *a, **k: "/usr/lib/python3/ok"
        builtins.isinstance = lambda *a: True
    """, canary, file_secret)
    assert all(v.startswith("refused") for k, v in results.items() if k != "system"), results
    assert results["system"].startswith("refused"), results


def test_kernel_confinement_alone_holds(canary, file_secret) -> None:
    """Layer 4 without the audit hook: what remains if the interpreter itself is subverted."""
    results = _run_layer("""
        limits.apply(memory_limit_mb=None, max_file_bytes=1 << 20)
        applied = limits.confine(audit.library_roots())
        if "landlock" not in applied or "seccomp" not in applied:
            print(repr({"skip": "no Landlock or seccomp here: " + repr(applied)}))
            sys.exit(0)
    """, canary, file_secret)
    if "skip" in results:
        pytest.skip(results["skip"])
    for name in ("read", "read_os", "write", "socket", "exec", "environ"):
        assert results[name].startswith("refused"), results
    assert results["system"] != "DONE 'ran'", results  # the shell could not be executed
