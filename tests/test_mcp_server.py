"""``cavelite mcp`` through the SDK's own client: the server is a real subprocess (stdio) or a
real HTTP server on 127.0.0.1, and its runtimes are real workers that must go with their sessions."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.processes import wait_gone, worker_pids
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from PIL import Image

from cavelite import CaveUsageError
from cavelite._cli_mcp import policy_from_json
from cavelite.mcp_server import ServerOptions, Sessions

SECRET = "MCP-CANARY-91d2"


def stdio_server(*args: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "cavelite", "mcp", *args])


def text(result) -> str:
    return "\n".join(part.text for part in result.content if part.type == "text")


def test_a_stdio_client_runs_cells_and_its_state_persists() -> None:
    async def session() -> None:
        async with Client(stdio_server()) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            assert names == ["run_python", "list_variables", "describe_variable", "reset"]
            made = await client.call_tool("run_python", {"code": "rows = [3, 1, 2]\nprint('made')"})
            assert not made.is_error and "made" in text(made) and "rows: list" in text(made)
            later = await client.call_tool("run_python", {"code": "sorted(rows)"})
            assert not later.is_error and "[value] [1, 2, 3]" in text(later)
            # A refused cell is a tool error whose text tells the model what to do instead.
            refused = await client.call_tool("run_python", {"code": "import subprocess"})
            assert refused.is_error
            assert "import of 'subprocess' is not allowed" in text(refused)
            assert "allowed modules" in text(refused)
            failed = await client.call_tool("run_python", {"code": "rows.append(4)\n1 / 0"})
            assert failed.is_error and "ZeroDivisionError" in text(failed) and "rolled back" in text(failed)
            listed = await client.call_tool("list_variables", {})
            assert "rows: list = 3 items" in text(listed)
            described = await client.call_tool("describe_variable", {"name": "rows"})
            assert "[repr]\n[3, 1, 2]" in text(described)
            missing = await client.call_tool("describe_variable", {"name": "nope"})
            assert missing.is_error and "no variable named 'nope'" in text(missing)
            drawn = await client.call_tool("run_python", {"code": "import matplotlib.pyplot as plt\n"
                                                                  "plt.plot(rows)"})
            assert not drawn.is_error and "[figure 1] 640x480 PNG" in text(drawn)
            [image] = [part for part in drawn.content if part.type == "image"]
            assert image.mime_type == "image/png"
            assert Image.open(io.BytesIO(base64.b64decode(image.data))).size == (640, 480)
            reset = await client.call_tool("reset", {})
            assert not reset.is_error
            gone = await client.call_tool("run_python", {"code": "rows"})
            assert gone.is_error and "NameError" in text(gone)

    asyncio.run(session())


@pytest.fixture
def data_dirs(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sales.csv").write_text("region,amount\nEast,10\nWest,5\n")
    (root / "sub" / "more.json").write_text('[{"a": 1}, {"a": 2}]')
    outside = tmp_path / "secret.csv"
    outside.write_text(f"key\n{SECRET}\n")
    (root / "link.csv").symlink_to(outside)  # a way out, planted inside the root
    return root, outside


def test_load_data_reads_only_under_the_data_directories(data_dirs: tuple[Path, Path]) -> None:
    root, outside = data_dirs

    async def session() -> None:
        async with Client(stdio_server("--data-dir", str(root))) as client:
            files = text(await client.call_tool("list_data_files", {}))
            assert files.splitlines() == ["link.csv", "sales.csv", "sub/more.json"]
            loaded = await client.call_tool("load_data", {"path": "sales.csv"})
            assert not loaded.is_error and "sales: pandas.DataFrame = 2 rows x 2 columns" in text(loaded)
            named = await client.call_tool("load_data", {"path": str(root / "sub" / "more.json"),
                                                         "name": "more"})
            assert not named.is_error
            total = await client.call_tool("run_python", {"code": "int(sales.amount.sum() + more.a.sum())"})
            assert "[value] 18" in text(total)
            for path in (str(outside), "../secret.csv", "link.csv", "sub/../../secret.csv", "/etc/passwd"):
                refused = await client.call_tool("load_data", {"path": path})
                assert refused.is_error and "not a file under the data directories" in text(refused), path
                assert SECRET not in text(refused)
            # A name that is not one must not turn "NAME=PATH" into a path of its own.
            for name in ("../../secret.csv", "x/y", "class", "a=b"):
                odd = await client.call_tool("load_data", {"path": "sales.csv", "name": name})
                assert odd.is_error and "not a valid Python variable name" in text(odd), name
            listed = text(await client.call_tool("list_variables", {}))
            assert SECRET not in listed and "secret" not in listed and "link" not in listed
            # Cells still cannot open the files the server may load.
            path = str(root / "sales.csv")
            code = f"import pandas as pd\npd.read_csv({path!r})"
            opened = await client.call_tool("run_python", {"code": code})
            assert opened.is_error and "not permitted" in text(opened)

    asyncio.run(session())


def test_the_stdio_runtime_goes_with_its_client() -> None:
    before = worker_pids()

    async def session() -> set[int]:
        async with Client(stdio_server()) as client:
            assert "[value] 2" in text(await client.call_tool("run_python", {"code": "1 + 1"}))
            return worker_pids() - before

    mine = asyncio.run(session())
    assert mine, "the server's runtime had no worker"
    assert not wait_gone(mine, timeout=20), "the runtime outlived its client"


class HttpServer:
    """``cavelite mcp --http --port 0`` as a subprocess; ``url`` once it listens."""

    def __init__(self, *args: str) -> None:
        command = [sys.executable, "-m", "cavelite", "mcp", "--http", "--port", "0", *args]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        assert self.process.stderr is not None
        ready, _, _ = select.select([self.process.stderr], [], [], 60)
        line = self.process.stderr.readline() if ready else ""
        assert line.startswith("cavelite mcp: serving on "), line
        self.url = line.split()[-1]

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return code


@pytest.fixture
def http() -> Iterator[HttpServer]:
    server = HttpServer()
    yield server
    if server.process.poll() is None:
        server.stop()


def cave_sessions() -> dict[int, set[int]]:
    """The live cave processes below this test, by session id (a runtime's processes share one)."""
    found: dict[int, set[int]] = {}
    for pid in worker_pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        found.setdefault(int(stat[stat.rfind(")") + 2:].split()[3]), set()).add(pid)
    return found


def test_two_http_clients_have_separate_sessions_closed_with_them(http: HttpServer) -> None:
    before = set(cave_sessions())

    async def sessions() -> None:
        async with Client(http.url) as first:
            assert not (await first.call_tool("run_python", {"code": "mine = 'first'"})).is_error
            [first_sid] = set(cave_sessions()) - before
            async with Client(http.url) as second:
                peek = await second.call_tool("run_python", {"code": "mine"})
                assert peek.is_error and "NameError" in text(peek)
                assert not (await second.call_tool("run_python", {"code": "mine = 'second'"})).is_error
                again = await first.call_tool("run_python", {"code": "mine"})
                assert "[value] 'first'" in text(again)
                [second_sid] = set(cave_sessions()) - before - {first_sid}
            # The second client ended its session (DELETE): its runtime is gone, the first's is not.
            assert not wait_gone(cave_sessions().get(second_sid, set()), timeout=20)
            assert first_sid in cave_sessions()
            assert "[value] 'first'" in text(await first.call_tool("run_python", {"code": "mine"}))

    asyncio.run(sessions())
    left = {pid for sid, pids in cave_sessions().items() if sid not in before for pid in pids}
    assert http.stop() in (0, 143, -signal.SIGTERM)
    assert not wait_gone(left, timeout=20), "runtimes outlived the server"


def test_a_sessionless_request_is_refused_not_forgotten(http: HttpServer) -> None:
    async def modern() -> None:
        async with Client(http.url, mode="2026-07-28") as client:
            result = await client.call_tool("run_python", {"code": "1"})
            assert result.is_error and "one Python session per connection" in text(result)

    asyncio.run(modern())


def test_sessions_are_bounded_and_idle_ones_closed() -> None:
    sessions = Sessions(ServerOptions(max_sessions=1, idle_timeout=60, preload=("numpy",)))
    try:
        runtime = sessions.get("a")
        assert sessions.get("a") is runtime
        with pytest.raises(CaveUsageError, match="already holds 1 sessions"):
            sessions.get("b")
        assert sessions.close_idle() == []
        assert sessions.close_idle(now=10**9) == ["a"] and runtime.closed and len(sessions) == 0
    finally:
        sessions.close_all()


def test_policy_files(tmp_path: Path) -> None:
    good = tmp_path / "policy.json"
    good.write_text('{"deny_imports": ["pandas"], "regexes": [{"pattern": "DROP", "message": "no"}]}')
    policy = policy_from_json(str(good))
    assert not policy.imports.allows("pandas") and policy.regexes[0].pattern == "DROP"
    for body, message in (('{"allow_everything": true}', "unknown policy key"),
                          ('{"deny_imports": "pandas"}', "must be a list of strings"),
                          ("[1]", "must hold a JSON object"), ("{", "cannot read")):
        bad = tmp_path / "bad.json"
        bad.write_text(body)
        with pytest.raises(CaveUsageError, match=message):
            policy_from_json(str(bad))
    code = subprocess.run([sys.executable, "-m", "cavelite", "mcp", "--policy", str(bad)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert code.returncode == 2 and "cannot read the policy file" in code.stderr
