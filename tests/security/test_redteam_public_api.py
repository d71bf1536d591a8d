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


_PATH_HARM = pytest.mark.xfail(strict=True, reason="red team: a tool that returns a pathlib.Path "
                               "(or a list of them) gives the cell the Path's public methods in "
                               "the host: it reads the canary and writes next to it")


# In a DataFrame the Path is copied by value into the worker, where the audit hook and
# Landlock stop it: that shape holds.
@pytest.mark.parametrize("shape", [pytest.param("path", marks=_PATH_HARM),
                                   pytest.param("list_of_paths", marks=_PATH_HARM),
                                   "dataframe_of_paths"])
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


@pytest.mark.xfail(strict=True, reason="red team: a forked child of the host holds the zygote's "
                   "control socket and the session sockets: when the host dies, its zygote and "
                   "sessions live on for as long as the child does")
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
