"""Shared helpers for the escape corpus: canaries and a harm check.

An attack passes only if the harm did not happen: the canary file outside the
sandbox was neither read (its secret appears nowhere in what came back) nor
changed, nothing new appeared next to it or in the host's marker path, no
process other than the cave's own was started, the worker holds no new
socket, and the host's environment secret never reached a cell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes.processes import descendants

from cavelite import Runtime

FILE_SECRET = "CANARY-FILE-7f3a9c"
ENV_SECRET = "CANARY-ENV-51be02"
# Set before any runtime (and so any zygote) of this session exists.
os.environ["CAVELITE_CANARY"] = ENV_SECRET

_CAVE_NAMES = ("cave-", "python")


def socket_count(pid: int) -> int:
    """Sockets a process holds (the host socket and the event loop's pair are expected)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    count = 0
    for fd in fds:
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


@dataclass
class Canary:
    """A secret file outside the cave and a path the host would find created."""

    dir: Path
    file: Path
    host_marker: Path

    def snapshot(self) -> tuple[bytes, int, list[str]]:
        st = self.file.stat()
        return self.file.read_bytes(), st.st_mtime_ns, sorted(os.listdir(self.dir))


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Canary:
    root = tmp_path_factory.mktemp("canary")
    secret = root / "secret.txt"
    secret.write_text(f"{FILE_SECRET}\n")
    return Canary(root, secret, root / "host-was-here")


@pytest.fixture(scope="module")
def cave():
    """A runtime shared by a module's attacks (a failed cell rolls back)."""
    runtime = Runtime(cell_timeout=10, memory_limit_mb=512)
    yield runtime
    runtime.close()


class Harm:
    """Checks, around one attack, that nothing it aimed at happened."""

    def __init__(self, rt: Runtime, canary: Canary):
        self.rt = rt
        self.canary = canary
        self.before = canary.snapshot()
        self.sockets = socket_count(rt.pid)

    def assert_none(self, result: object, *extra: object) -> None:
        texts = [getattr(result, "stdout", ""), getattr(result, "stderr", ""),
                 getattr(result, "value_repr", "") or ""]
        error = getattr(result, "error", None)
        if error is not None:
            texts += [error.message, getattr(error, "traceback", "") or ""]
        texts += [repr(x) for x in extra]
        joined = "\n".join(t for t in texts if t)
        assert FILE_SECRET not in joined, "the canary file was read"
        assert ENV_SECRET not in joined, "the host's environment reached the cell"
        # The cell's own text (quoted in errors) may say ESCAPED; only its output may not.
        output = f"{getattr(result, 'stdout', '')}\n{getattr(result, 'value_repr', '') or ''}"
        assert "ESCAPED" not in output, f"the attack reached its target:\n{output[:2000]}"
        assert self.canary.snapshot() == self.before, "the canary directory changed"
        assert not self.canary.host_marker.exists(), "code ran in the host"
        strangers = {pid: name for pid, name in descendants().items()
                     if not name.startswith(_CAVE_NAMES)}
        assert not strangers, f"processes were started: {strangers}"
        assert socket_count(self.rt.pid) <= max(self.sockets, 3), "a socket was opened"
        # The runtime is still usable and its shared modules are intact.
        check = self.rt.execute("import json, math\n(json.dumps({'a': [1, 2]}), math.pi, "
                                "json.loads('[1]'))")
        assert check.ok, check.error
        assert check.value_repr == "('{\"a\": [1, 2]}', 3.141592653589793, [1])"


@pytest.fixture
def harm(cave: Runtime, canary: Canary) -> Harm:
    return Harm(cave, canary)


@pytest.fixture
def make_harm(canary: Canary):
    """Harm checks around a runtime other than the shared one."""
    return lambda rt: Harm(rt, canary)


@pytest.fixture(scope="session")
def file_secret() -> str:
    return FILE_SECRET
