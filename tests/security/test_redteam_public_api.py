"""Red team: the public API used the way a careless (that is, ordinary) host would.

- A narrow remote tool that returns a ``pathlib.Path`` (alone, in a list, in a
  DataFrame column) hands the cell a remote object whose public methods all
  run in the host: ``read_text``, ``write_text``, ``unlink``, ``open``... The
  registry forwards every public attribute of whatever a tool returns that
  is not plain data (`codec._HostPickler`, `registry.RemoteRegistry.resolve`),
  so the tool's narrowness is silently widened to the host's file system.
- A host that forks after creating a runtime (``multiprocessing`` with the
  fork start method, a pre-forking server, a daemonising helper) gives the
  child copies of the zygote's control socket and of every session socket.
  When the host dies, the zygote never sees the end of its control socket,
  so it never stops the host's sessions: they live as long as the child.
"""

from __future__ import annotations

import os
import pathlib
import signal

import pandas as pd
import pytest
from fakes.hosts import run_host
from fakes.processes import wait_gone

from cavelite import Runtime

SHAPES = {
    "path": lambda p: p,
    "list_of_paths": lambda p: [p],
    "dataframe_of_paths": lambda p: pd.DataFrame({"file": [p]}),
}
REACH = {
    "path": "p = found",
    "list_of_paths": "p = found[0]",
    "dataframe_of_paths": "p = found['file'][0]",
}


# In every shape the Path is copied by value into the worker, where the audit hook and
# Landlock stop it.
@pytest.mark.parametrize("shape", ["path", "list_of_paths", "dataframe_of_paths"])
def test_a_tool_returning_a_path_does_not_open_the_hosts_files(canary, make_harm, shape: str) -> None:
    reports = canary.dir / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "q1.csv").write_text("region,amount\n")

    def find_report(name: str) -> object:
        """Where a named report is kept (so the model can mention it)."""
        return SHAPES[shape](reports / pathlib.Path(name).name)

    with Runtime(cell_timeout=10) as rt:
        rt.inject("find_report", find_report)
        harm = make_harm(rt)
        result = rt.execute(f"found = find_report('q1.csv')\n{REACH[shape]}\n"
                            "up = p.parent.parent\n"
                            "print(up.joinpath('secret.txt').read_text())\n"
                            "up.joinpath('host-was-here').write_text('ESCAPED')\n")
        try:
            harm.assert_none(result)
        finally:
            canary.host_marker.unlink(missing_ok=True)


# What a tool returns that belongs to Python's standard library and is not a value: each would
# be a capability over the host's files, sockets or processes if it came back as a proxy.
CAPABILITIES = {
    "open file": "open(secret)",
    "directory entry": "list(os.scandir(secret.parent))[0]",
    "sqlite connection": "sqlite3.connect(':memory:')",
    "socket": "socket.socket()",
    "generator": "(n for n in range(3))",
    "function": "os.remove",
    "builtin": "open",
    "bound method": "secret.read_text",
    "method of a class": "subprocess.Popen.communicate",
    "zip file": "zipfile.ZipFile(io.BytesIO(), 'w')",
    "logging handler": "logging.FileHandler(secret, delay=True)",
}


@pytest.mark.parametrize("what", list(CAPABILITIES))
def test_a_tool_returning_a_standard_library_capability_hands_out_nothing(canary, make_harm,
                                                                         what: str) -> None:
    import io
    import logging
    import socket
    import sqlite3
    import subprocess
    import zipfile

    names = {"io": io, "logging": logging, "os": os, "socket": socket, "sqlite3": sqlite3,
             "subprocess": subprocess, "zipfile": zipfile, "secret": canary.file}
    made: list[object] = []

    def tool() -> object:
        """Returns something it should not."""
        made.append(eval(CAPABILITIES[what], names))  # noqa: S307 - the test's own table
        return made[-1]

    with Runtime(cell_timeout=10) as rt:
        rt.inject("tool", tool)
        harm = make_harm(rt)
        result = rt.execute("got = tool()")
        assert result.error is not None and result.error.type == "TypeError", result
        assert "standard library" in result.error.message
        assert rt.execute("'got' in dir()").value_repr == "False"
        harm.assert_none(result)
        assert rt.execute("tool.__name__").ok, "the session goes on"
    for each in made:
        close = getattr(each, "close", None)
        if callable(close) and not isinstance(each, type):
            close()


def test_standard_library_values_are_copied_and_the_hosts_own_objects_stay_remote(canary) -> None:
    import types as types_

    class Lights:
        def __init__(self) -> None:
            self.lit = False

        def on(self) -> str:
            self.lit = True
            return "on"

    lights = Lights()

    def kitchen() -> object:
        """A room: plain values and the host's own object inside a standard-library one."""
        return types_.SimpleNamespace(name="kitchen", path=canary.file, lights=lights)

    with Runtime(cell_timeout=10) as rt:
        rt.inject("kitchen", kitchen)
        r = rt.execute("room = kitchen()\n"
                       "(type(room).__name__, room.name, type(room.path).__name__, "
                       "room.path.name, room.lights.on())")
        assert r.ok, r.error
        assert r.value_repr == f"('SimpleNamespace', 'kitchen', 'PosixPath', '{canary.file.name}', 'on')"
        assert lights.lit, "the host's own object is still reached by reference"
        refused = rt.execute("room.path.read_text()")  # the copy has the worker's powers
        assert refused.error is not None and canary.file.read_text() not in str(refused)


def test_a_standard_library_object_the_host_handed_out_keeps_what_it_returns() -> None:
    """An explicit grant (remote=True) of a connection: its cursor stays remote, rows are values."""
    import sqlite3

    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.execute("create table t (x)")
    db.execute("insert into t values (1), (2)")
    try:
        with Runtime(cell_timeout=10) as rt:
            rt.inject("db", db, remote=True)
            r = rt.execute("cursor = db.execute('select x from t order by x')\n"
                           "cursor.fetchall()")
            assert r.ok, r.error
            assert r.value_repr == "[(1,), (2,)]"
    finally:
        db.close()


def test_a_host_that_forked_still_takes_its_sessions_with_it() -> None:
    run = run_host("""
from cavelite import Runtime
from cavelite.runtime.zygote import Zygote
rt = Runtime()
assert rt.execute("x = 1").ok
child = os.fork()
if child == 0:  # a helper the host forked (a pool worker, a daemon): it outlives the host
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    time.sleep(60)
    os._exit(0)
report(worker=rt.pid, child=child, zygote=Zygote.shared(rt.preload).process.pid)
os._exit(1)  # the host dies without closing anything
""", timeout=60)
    report = run.report
    assert report, run.stderr[-2000:]
    try:
        left = wait_gone({int(report["worker"]), int(report["zygote"])}, timeout=5)  # type: ignore[call-overload]
        assert not left, f"the dead host's zygote and session still run: {sorted(left)}"
    finally:
        try:
            os.kill(int(report["child"]), signal.SIGKILL)  # type: ignore[call-overload]
        except ProcessLookupError:
            pass
        wait_gone({int(report["worker"]), int(report["zygote"])}, timeout=10)  # type: ignore[call-overload]
