"""A host that dies mid-cell leaves no worker spinning: its zygote stops the workers it handed out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from fakes.processes import wait_gone

HOST = textwrap.dedent("""
    import sys, threading
    from cavelite import Runtime
    rt = Runtime(cell_timeout=None)
    started = threading.Event()
    rt.inject("started", lambda: started.set())
    threading.Thread(target=rt.execute, args=("started()\\nwhile True:\\n    pass",), daemon=True).start()
    started.wait(60)
    print(rt.pid, flush=True)
    sys.stdin.read()  # until the test kills us
""")


def test_a_killed_host_takes_its_spinning_worker_with_it() -> None:
    with subprocess.Popen([sys.executable, "-c", HOST], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as host:
        worker = int(host.stdout.readline())
        with open(f"/proc/{worker}/comm") as f:
            assert f.read().strip() == "cave-worker"  # the cell is running in it
        host.send_signal(signal.SIGKILL)  # no atexit, no close: as when a Ray node is removed
        host.wait()
        # No cell deadline can be enforced now: the zygote must stop the worker itself.
        assert wait_gone({worker}, timeout=30) == set()
    assert not os.path.exists(f"/proc/{worker}")
