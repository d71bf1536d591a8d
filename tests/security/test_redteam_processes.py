"""Red team: processes of a session outliving it, and the zygote's memory of old sessions.

- A taken worker may fork (the checkpoint's own fork, re-entered: the audit
  hook lets it through and seccomp allows ``clone``). `WorkerConnection.close`
  and `Session.restart` kill only the serving process, by pidfd: a fork that
  does not exit on its own, and the checkpoint whose pipe it inherited, live
  on after ``close()`` and ``reset()``, for as long as the host runs, in a
  cgroup leaf nobody sweeps. Each new session can leave its task bound's
  worth (64) of them.
- The zygote remembers every session id it ever handed out (``sessions`` in
  `zygote_main.main`, never pruned) and, when its host goes, SIGKILLs every
  process on the machine whose session id is one of them. Session ids are
  pids; pids are recycled (``pid_max`` is 32768 here). A stranger that
  became a session leader under a recycled pid (a login shell, a daemon,
  anything started with ``setsid``) is killed with the host's sessions.

Each test checks the processes themselves: whether they are still alive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from collections.abc import Iterator

import pytest
from fakes.compromise import MARK, PRELOAD
from fakes.processes import wait_gone

from cavelite import Runtime
from cavelite.runtime.zygote import Zygote

FORK_AND_LINGER = MARK + textwrap.dedent("""
    from cavelite.runtime import checkpoint
    r, w = os.pipe()
    child = checkpoint._fork()
    if child == 0:
        os.read(r, 1)  # holds both ends: nobody will ever write or close them
        os._exit(0)
    os.close(r)
    os.close(w)
    print(child)
""")


def _session_processes(session_id: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                fields = stat[stat.rfind(")") + 2:].split()
                if fields[0] != "Z" and int(fields[3]) == session_id:
                    found.add(int(entry))
            except (OSError, ValueError):
                continue
    return found


@pytest.fixture
def lingering() -> Iterator[list[int]]:
    """Session ids whose processes the test kills at the end, whatever happened."""
    sessions: list[int] = []
    yield sessions
    for session_id in sessions:
        left = _session_processes(session_id)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)  # started by this test's own attack
            except ProcessLookupError:
                pass
        wait_gone(left)


@pytest.mark.xfail(strict=True, reason="red team: a fork of a taken worker (and the checkpoint "
                   "whose pipe it holds) survives Runtime.close(): close kills the serving "
                   "process only")
def test_a_closed_session_leaves_no_process_behind(lingering: list[int]) -> None:
    rt = Runtime(preload=PRELOAD, cell_timeout=10)
    session_id = rt.pid
    lingering.append(session_id)
    forked = rt.execute(FORK_AND_LINGER)
    assert forked.ok, forked.error
    rt.close()
    left = wait_gone(_session_processes(session_id), timeout=3)
    assert not left, f"processes of a closed session still run: {sorted(left)}"


@pytest.mark.xfail(strict=True, reason="red team: a fork of a taken worker survives reset(): "
                   "the 'fresh worker' is fresh, the old session's processes keep running")
def test_reset_leaves_no_process_of_the_old_session(lingering: list[int]) -> None:
    with Runtime(preload=PRELOAD, cell_timeout=10) as rt:
        session_id = rt.pid
        lingering.append(session_id)
        forked = rt.execute(FORK_AND_LINGER)
        assert forked.ok, forked.error
        rt.reset()
        lingering.append(rt.pid)
        assert rt.execute("1 + 1").value_repr == "2"
        left = wait_gone(_session_processes(session_id), timeout=3)
        assert not left, f"processes of the session before reset() still run: {sorted(left)}"


# --- the zygote kills by session ids it should have forgotten ------------------------------------

_LAST_PID = "/proc/sys/kernel/ns_last_pid"


def _start_with_pid(pid: int, tries: int = 50) -> subprocess.Popen[bytes] | None:
    """A new session leader whose pid (hence session id) is ``pid``, by rewinding the pid counter."""
    for _ in range(tries):
        with open(_LAST_PID, "w") as f:
            f.write(str(pid - 1))
        victim = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  start_new_session=True)
        if victim.pid == pid:
            return victim
        victim.stdin.close()  # type: ignore[union-attr]
        victim.wait()  # someone else on the machine forked first: try again
    return None


@pytest.mark.skipif(os.geteuid() != 0 or not os.access(_LAST_PID, os.W_OK),
                    reason="rewinding the pid counter needs root")
@pytest.mark.xfail(strict=True, reason="red team: the zygote keeps every session id it handed out "
                   "and, when its host goes, SIGKILLs any process whose session id matches one: "
                   "a stranger that got a recycled pid dies")
def test_when_the_host_goes_the_zygote_kills_only_its_own_sessions() -> None:
    preload = ("json",)  # a zygote of this test's own, closed below as a host's exit would
    key = tuple(sorted(preload))
    rt = Runtime(preload=preload)
    old_session = rt.pid
    rt.close()
    assert not wait_gone(_session_processes(old_session)), "the session did not end"
    victim = _start_with_pid(old_session)
    if victim is None:
        pytest.skip("the machine kept taking the pid first")
    try:
        zygote = Zygote._instances.pop(key)
        zygote.close()  # what the host's exit does (atexit): the zygote stops its sessions
        alive = victim.poll() is None
        assert alive, (f"the zygote killed process {victim.pid} (not one of its sessions: it "
                       f"only reused the pid of a session that ended earlier), signal "
                       f"{-victim.returncode if victim.returncode else 0}")
    finally:
        victim.stdin.close()  # type: ignore[union-attr]
        victim.wait()
