"""Red team: a taken worker against what the kernel layer and the host believe about it.

- Landlock has no right for ``stat``/``access`` and the seccomp allowlist
  lets ``newfstatat``, ``statx``, ``access`` and ``faccessat`` name any path.
  A taken worker learns whether any host path exists, its size, owner and
  timestamps, and whether it is readable (here, with
  ``capabilities:dac_read_search`` kept, even under ``/root``). The canary's
  contents stay unread; its existence and size do not.
- After a takeover the host replaces ``Runtime.confinement`` with whatever
  the new process's ``Ready`` lists (`WorkerConnection.adopt_takeover`). The
  kernel layer cannot be lifted, but a host that decides by
  ``Runtime.confinement`` (docs/security.md suggests refusing to run without
  ``cgroup-memory``) now reads the worker's word.
- A broad sweep of system calls not in the kernel suite (run from the taken
  worker, audit hook and all): the refusals are checked to hold.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator

import pytest
from fakes.compromise import MARK, PRELOAD

from cavelite import Runtime


@pytest.fixture(scope="module")
def taken() -> Iterator[Runtime]:
    runtime = Runtime(preload=PRELOAD, cell_timeout=10, request_timeout=3)
    yield runtime
    runtime.close()


@pytest.mark.xfail(strict=True, reason="red team: stat/access of any host path from a taken "
                   "worker (Landlock has no right for them, seccomp allows them): the canary's "
                   "existence, size and readability leak")
def test_a_taken_worker_learns_nothing_of_host_paths(taken: Runtime, canary) -> None:
    result = taken.execute(MARK + textwrap.dedent(f"""
        seen = {{}}
        for path in ({str(canary.file)!r}, {str(canary.dir / 'missing')!r}):
            try:
                seen[path] = (os.stat(path).st_size, os.access(path, os.R_OK))
            except OSError as exc:
                seen[path] = type(exc).__name__
        print(seen)
        raise RuntimeError('done')
    """))
    assert result.error is not None and "done" in result.error.message
    found = eval(result.stdout)  # noqa: S307 - our own print of a dict of tuples
    existing, missing = found[str(canary.file)], found[str(canary.dir / "missing")]
    assert existing == missing, (f"the worker told the canary ({existing}: size, readable) from "
                                 f"a missing path ({missing})")


FORGED_TAKEOVER = MARK + textwrap.dedent("""
    import time
    from cavelite.runtime import checkpoint
    child = checkpoint._fork()
    if child == 0:  # takes over with a confinement of its own choosing, then serves as usual
        nonce = os.urandom(16)
        send(messages.Ready('', ('rlimits', 'audit-hook', 'landlock', 'seccomp', 'cgroup-memory',
                                 'cgroup-pids', 'gvisor'), nonce))
        protocol.skip_until_sync(worker.sock, nonce)
        while True:
            request, buffers = worker.recv()
            worker.dispatch(request, buffers, nested=False)
    time.sleep(3600)  # the host kills this one when it adopts the child
""")


@pytest.mark.xfail(strict=True, reason="red team: after a takeover Runtime.confinement is the "
                   "new process's claim (adopt_takeover copies Ready.confinement): names it "
                   "never applied appear, names it did apply vanish")
def test_a_takeover_cannot_rewrite_the_reported_confinement() -> None:
    with Runtime(preload=PRELOAD, cell_timeout=5, request_timeout=3) as rt:
        before = rt.confinement
        assert rt.execute("precious = [1, 2, 3]").ok
        rt.execute(FORGED_TAKEOVER)
        assert rt.execute("precious").value_repr == "[1, 2, 3]"
        after = rt.confinement
        assert after == before, f"confinement was {before}, the host now reports {after}"


SWEEP = MARK + textwrap.dedent("""
    import socket
    host = HOST
    acts = {
        'statvfs': lambda: os.statvfs('/'),
        'sendfile': lambda: os.sendfile(1, 0, 0, 1),
        'splice': lambda: os.splice(0, 1, 1),
        'copy_file_range': lambda: os.copy_file_range(0, 1, 1),
        'eventfd': lambda: os.eventfd(0),
        'chroot': lambda: os.chroot('/'),
        'raise_own_priority': lambda: os.nice(-5),
        'setgroups_root': lambda: os.setgroups([0]),
        'realtime_self': lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50)),
        'fadvise': lambda: os.posix_fadvise(0, 0, 0, 0),
        'memfd_hugetlb': lambda: os.memfd_create('x', os.MFD_HUGETLB),
        'mknod': lambda: os.mknod('/tmp/cave-redteam-node'),
        'setuid_root': lambda: os.setuid(0),
        'getpriority_host': lambda: os.getpriority(os.PRIO_PROCESS, host),
        'getsid_host': lambda: os.getsid(host),
        'readlink_host_cwd': lambda: os.readlink(f'/proc/{host}/cwd'),
        'host_environ': lambda: open(f'/proc/{host}/environ', 'rb').read(64),
        'forged_credentials': lambda: worker.sock.sendmsg(
            [b'x'], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS,
                      __import__('struct').pack('iII', host, 0, 0))]),
    }
    done = []
    for name, act in acts.items():
        try:
            act()
            done.append(name)
        except Exception:
            pass
    print(done)
    raise RuntimeError('swept')
""")


def test_system_calls_outside_the_kernel_suite_are_refused(taken: Runtime) -> None:
    result = taken.execute(SWEEP.replace("HOST", str(os.getpid())))
    assert result.error is not None and "swept" in result.error.message, result.error
    assert result.stdout.strip() == "[]", f"these succeeded: {result.stdout}"
    assert not os.path.exists("/tmp/cave-redteam-node")
    assert taken.execute("1 + 1").value_repr == "2"
