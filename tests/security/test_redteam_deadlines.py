"""Red team: a taken worker that makes a host request outlast its deadline.

`Session.request` bounds the wait for the *first byte* of a reply (select
with the deadline, the pidfd watched). Two waits are outside it: sending
the request (``sendall`` on a blocking socket: a worker that stops reading
fills the socket buffer) and reading the rest of a frame once its header
arrived (``protocol._recv_exact`` peeks and reads, blocking, with no
deadline and no pidfd). A live worker that stalls in either place holds the
host forever, and, through the runtime's lock, ``close()`` and the
interpreter's exit with it.

Each test runs the host call in a thread and checks that it came back in a
few times its deadline; the cleanup kills the session's processes (they are
ours: the test started them) so that the stuck thread ends.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.compromise import MARK, PRELOAD
from fakes.processes import wait_gone

from cavelite import Runtime

TIMEOUT = 1.0
GIVE_UP = 5 * TIMEOUT


def _session_processes(session_id: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                if int(stat[stat.rfind(")") + 2:].split()[3]) == session_id:
                    found.add(int(entry))
            except (OSError, ValueError):
                continue
    return found


@pytest.fixture
def taken() -> Iterator[Runtime]:
    runtime = Runtime(preload=PRELOAD, cell_timeout=TIMEOUT, request_timeout=TIMEOUT)
    session_id = runtime.pid
    yield runtime
    stuck = _session_processes(session_id)
    for pid in stuck:
        try:
            os.kill(pid, signal.SIGKILL)  # the test's own session, stalled on purpose
        except ProcessLookupError:
            pass
    wait_gone(stuck)
    runtime.close()


def _in_thread(call: Any) -> tuple[bool, float]:
    """Run ``call`` in a thread; (whether it came back within GIVE_UP, seconds it took)."""
    done = threading.Event()
    started = time.monotonic()

    def run() -> None:
        try:
            call()
        except Exception:  # noqa: BLE001 - a clear error is a fine way to come back
            pass
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    came_back = done.wait(GIVE_UP)
    return came_back, time.monotonic() - started


@pytest.mark.xfail(strict=True, reason="red team: a worker that stops reading leaves the host in "
                   "sendall forever (Session.request bounds only the wait for the reply); close() "
                   "and interpreter exit then wait on the runtime's lock")
@pytest.mark.parametrize("request_", ["execute", "inject"])
def test_a_worker_that_stops_reading_cannot_hold_a_request(taken: Runtime, request_: str) -> None:
    assert taken.execute("precious = [1, 2, 3]").ok
    stalled = taken.execute(MARK + "import time\nworker.recv = lambda: time.sleep(3600)\n")
    assert stalled.ok, stalled.error
    big = "a" * 4_000_000  # more than the socket buffers hold (inline: not a memfd buffer)
    calls = {"execute": lambda: taken.execute(f"s = {big!r}\nlen(s)"),
             "inject": lambda: taken.inject("s", big)}
    came_back, seconds = _in_thread(calls[request_])
    assert came_back, f"`{request_}` (deadline {TIMEOUT:g} s) had not returned after {seconds:.0f} s"


@pytest.mark.xfail(strict=True, reason="red team: a frame header followed by silence leaves the "
                   "host in protocol._recv_exact forever (no deadline, no pidfd once the first "
                   "byte arrived)")
def test_a_frame_cut_short_by_a_live_worker_cannot_hold_the_host(taken: Runtime) -> None:
    attack = MARK + ("import time\nworker.sock.sendall(protocol.HEADER.pack(100, 0, 0))\n"
                     "time.sleep(3600)\n")
    came_back, seconds = _in_thread(lambda: taken.execute(attack))
    assert came_back, f"a cell with timeout {TIMEOUT:g} s had not returned after {seconds:.0f} s"
