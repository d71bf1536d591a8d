"""`runtime.reaper` on its own: ending a session by session id, and only a session of ours.

The runtime's tests take the cgroup path (this CI runs as root with cgroups);
these take the other one, used where no cgroup leaf exists: processes of a
session id, killed through pidfds only while a process known to be ours
keeps that id from being handed to anyone else.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from fakes.processes import wait_gone

from cavelite.runtime import reaper


def _session_with_grandchild() -> tuple[int, int]:
    """A child that makes itself a session leader and forks one more; (child, grandchild)."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                os.close(w)
                signal.pause()
                os._exit(0)
            os.write(w, str(grandchild).encode())
            os.close(w)
            signal.pause()
        finally:
            os._exit(0)
    os.close(w)
    grandchild = int(os.read(r, 32).decode())
    os.close(r)
    return child, grandchild


@pytest.fixture
def session() -> Iterator[tuple[int, int]]:
    child, grandchild = _session_with_grandchild()
    yield child, grandchild
    for pid in (child, grandchild):
        try:
            os.kill(pid, signal.SIGKILL)  # started by this test
        except ProcessLookupError:
            pass
    wait_gone({child, grandchild})
    try:
        os.waitpid(child, 0)
    except ChildProcessError:
        pass


def test_a_session_of_ours_is_ended_whole(session: tuple[int, int]) -> None:
    child, grandchild = session
    leader = os.pidfd_open(child)
    try:
        assert reaper.kill_session_id(child, leader) >= 2
    finally:
        os.close(leader)
    assert not wait_gone({child, grandchild}), "a process of the session lived on"


def test_a_child_in_the_session_is_enough_to_know_it_is_ours(session: tuple[int, int]) -> None:
    child, grandchild = session  # the child is ours: our child, in that session
    reaper.kill_session_id(child, -1)
    assert not wait_gone({child, grandchild})


def test_without_a_live_process_of_ours_nothing_is_killed(session: tuple[int, int]) -> None:
    """A session id seen with no process of ours alive in it may be a stranger's (a recycled
    pid): the grandchild here is left alone once its leader, our child, is gone."""
    child, grandchild = session
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)  # the grandchild is now nobody's child of ours
    reaper.kill_session_id(child, -1)
    assert wait_gone({grandchild}, timeout=0.3) == {grandchild}
