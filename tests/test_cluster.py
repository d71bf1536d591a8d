"""Sessions on a real three-node Ray cluster on this machine (`ray.cluster_utils.Cluster`).

One cluster for the whole module (it takes ~10 s to start); every address is on
the loopback. The node-loss tests come last: they remove a node for real.
"""

from __future__ import annotations

import asyncio
import os
import threading

# Before Ray is imported: resolve this machine's nodes to 127.0.0.1, never to an interface.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import ray  # noqa: E402
from fakes.processes import wait_gone  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import cavelite.cluster as cc  # noqa: E402
from cavelite import (  # noqa: E402
    CaveLite,
    CaveRuntimeError,
    CaveUsageError,
    RuntimeClosedError,
    UnpicklableValueError,
    VariableNotFoundError,
)
from cavelite.models import ScriptedModel  # noqa: E402

NODE = dict(num_cpus=1, node_ip_address="127.0.0.1", object_store_memory=80 * 2**20)
# Node death noticed in ~1.5 s instead of ~15 s.
FAST_HEALTH = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
               "health_check_initial_delay_ms": 0}
WAIT_S = 60.0


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args=dict(
        NODE, include_dashboard=False, _system_config=FAST_HEALTH))
    workers = [c.add_node(**NODE) for _ in range(2)]
    ray.init(address=c.address, log_to_driver=False)
    c.worker_list = workers  # type: ignore[attr-defined]
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def sessions(cluster):
    """The main deployment: snapshots in Ray's object store, no idle sleep."""
    return cc.connect(cluster.address, space="main", idle_s=None)


def nodes_alive() -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


# --- the Runtime API through the cluster ------------------------------------------------------


def test_a_session_runs_cells_and_an_id_always_reaches_it(sessions, cluster):
    rt = sessions.open("alice")
    assert rt.execute("x = 40 + 2").ok
    assert rt.retrieve("x") == 42
    assert [v.name for v in rt.variables()] == ["x"]
    assert "rlimits" in rt.confinement and "audit-hook" in rt.confinement
    # Another client (its own Sessions, as another process would have) reaches the same session.
    other = cc.connect(cluster.address, space="main", idle_s=None)
    again = other.open("alice")
    assert again.execute("x + 1").value_repr == "43"
    assert again.node_id == rt.node_id == sessions.where("alice")
    assert "alice" in sessions.ids()


def test_new_sessions_go_to_the_least_loaded_node(sessions):
    for i in range(3):
        counts = {load["node"]: load["sessions"] for load in sessions.load()}
        rt = sessions.open(f"spread-{i}")
        rt.execute("y = 1")
        assert counts[rt.node_id] == min(counts.values()), (counts, rt.node_id)
    assert len({sessions.open(f"spread-{i}").node_id for i in range(3)}) >= 2


def test_data_goes_in_and_comes_back_as_native_objects(sessions):
    rt = sessions.open("data")
    frame = pd.DataFrame({"region": ["E", "W", "E"], "amount": [1.0, 2.0, 3.5]})
    rt.inject("orders", frame, description="orders")
    rt.inject("big", np.arange(1_000_000, dtype="float64"))
    result = rt.execute("totals = orders.groupby('region')['amount'].sum()\nm = big.mean()")
    assert result.ok, result.error
    pd.testing.assert_series_equal(rt.retrieve("totals"), frame.groupby("region")["amount"].sum())
    assert rt.retrieve("m") == pytest.approx(499999.5)


def test_failures_are_the_runtimes_and_the_state_survives(sessions):
    rt = sessions.open("failures", cell_timeout=5)
    assert rt.execute("rows = [1, 2, 3]").ok
    bad = rt.execute("rows.append(4)\n1 / 0")
    assert bad.error.kind == "exception" and bad.rolled_back
    slow = rt.execute("while True:\n    pass", timeout=0.3)
    assert slow.error.kind == "timeout"
    refused = rt.execute("import os\nos.listdir('/')")
    assert refused.error.kind == "policy"
    with pytest.raises(VariableNotFoundError, match="nope"):
        rt.retrieve("nope")
    with pytest.raises(CaveUsageError, match="not a valid Python name"):
        rt.inject("not a name", 1)
    with pytest.raises(CaveUsageError, match="other options"):
        sessions.open("failures", cell_timeout=9)
    with pytest.raises(CaveUsageError, match="unknown session options"):
        sessions.open("failures-2", no_such_option=1)
    with pytest.raises(CaveUsageError, match="cell_timeout must be positive"):
        sessions.open("failures-3", cell_timeout=-1)  # refused on the node by Runtime itself
    assert "failures-3" not in sessions.ids()  # and not left half-open
    with pytest.raises(UnpicklableValueError, match="remote=True"):
        rt.inject("lock", threading.Lock())
    assert rt.retrieve("rows") == [1, 2, 3]


def test_delete_reset_snapshot_restore(sessions):
    rt = sessions.open("lifecycle")
    rt.execute("a = 1\nb = 2")
    rt.delete("b")
    assert [v.name for v in rt.variables()] == ["a"]
    snap = rt.snapshot()
    rt.reset()
    assert rt.variables() == []
    rt.restore(snap)
    assert rt.retrieve("a") == 1
    rt.close()
    assert "lifecycle" not in sessions.ids()
    with pytest.raises(RuntimeClosedError):
        rt.execute("a")
    fresh = sessions.open("lifecycle")  # the id is free again: a new, empty session
    assert fresh.variables() == []


class Lights:
    def __init__(self) -> None:
        self.level = 0

    def set(self, level: int) -> int:
        """Set the light level."""
        self.level = level
        return level


class Home:
    """A home with rooms."""

    def __init__(self) -> None:
        self.lights = Lights()
        self.log: list[str] = []

    def room(self, name: str) -> Lights:
        self.log.append(name)
        return self.lights

    def fail(self) -> None:
        raise PermissionError("the door is locked")


def test_remote_objects_run_in_the_process_that_injected_them(sessions):
    rt = sessions.open("remotes")
    seen: list[tuple[int, int]] = []

    def record(value: int) -> int:
        """Record a value here, in the test process."""
        seen.append((os.getpid(), value))
        return value * 2

    home = Home()
    rt.inject("record", record)
    rt.inject("home", home, remote=True, description="the house")
    result = rt.execute("r = record(21)\nlevel = home.room('kitchen').set(7)\n(r, level)")
    assert result.ok, result.error
    assert result.value_repr == "(42, 7)"
    assert seen == [(os.getpid(), 21)]  # it ran here, not on the node
    assert home.lights.level == 7 and home.log == ["kitchen"]
    failed = rt.execute("home.fail()")
    assert failed.error.type == "PermissionError" and "locked" in failed.error.message
    injected = {i.name: i for i in rt.injected()}
    assert injected["record"].signature == "(value: int) -> int"
    assert injected["home"].kind == "object" and "room" in injected["home"].methods


def test_async_remote_functions_run_on_the_callers_event_loop(sessions):
    rt = sessions.open("async-remote")
    loops: list[asyncio.AbstractEventLoop] = []

    async def fetch(n: int) -> int:
        """Fetch the next number (on the caller's event loop)."""
        loops.append(asyncio.get_running_loop())
        return n + 1

    rt.inject("fetch", fetch)

    async def main() -> tuple[object, asyncio.AbstractEventLoop]:
        return await rt.aexecute("await fetch(1)"), asyncio.get_running_loop()

    result, loop = asyncio.run(main())
    assert result.value_repr == "2", result.error
    assert loops == [loop]


def test_a_tool_may_use_the_session_whose_cell_called_it(sessions):
    rt = sessions.open("nested")
    rt.execute("secret = 41")

    def peek() -> int:
        return rt.retrieve("secret") + 1  # a nested request, while the cell waits for us

    rt.inject("peek", peek)
    assert rt.execute("peek()").value_repr == "42"


def test_another_clients_remote_object_is_refused_in_the_cell(sessions, cluster):
    rt = sessions.open("owners")
    touched: list[int] = []
    rt.inject("mine", lambda: touched.append(1) or 1)
    other = cc.connect(cluster.address, space="main", idle_s=None).open("owners")
    result = other.execute("mine()")
    assert result.error is not None and "another process" in result.error.message
    assert touched == []  # it never ran
    assert rt.execute("mine()").value_repr == "1" and touched == [1]


def test_the_agent_loop_runs_here_and_the_cave_on_the_cluster(sessions):
    rt = sessions.open("agent")
    model = ScriptedModel(["```python\ntotals = df.groupby('region')['amount'].sum()\ntotals\n```",
                           "East leads."])
    agent = CaveLite(model, runtime=rt)
    agent.inject("df", pd.DataFrame({"region": ["East", "West", "East"], "amount": [1.0, 2.0, 3.0]}))
    reply = agent.chat("Revenue per region?")
    assert reply.text == "East leads." and reply.stop_reason.value == "completed"
    assert dict(agent.retrieve("totals")) == {"East": 4.0, "West": 2.0}
    agent.close()
    assert not rt.closed  # a shared runtime stays open


def test_the_zygote_is_a_clean_interpreter_without_ray_or_grpc(sessions):
    sessions.open("zygote-probe").execute("1")
    checked = 0
    for host in sessions.hosts().values():
        info = ray.get(host.info.remote())
        for pid in info["zygotes"] + list(info["workers"].values()):
            with open(f"/proc/{pid}/maps") as f:
                maps = f.read()
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            assert "python" in maps  # the check reads a real process
            assert "_raylet" not in maps and "grpc" not in maps.lower(), pid
            assert not [v for v in environ if v.startswith(b"RAY_")], pid
            checked += 1
        for pid in info["zygotes"]:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            assert b"-I" in argv  # a fresh interpreter (fork+exec), not a fork of the actor
            with open(f"/proc/{pid}/stat") as f:
                assert int(f.read().rsplit(")", 1)[1].split()[1]) == info["pid"]
    assert checked >= 2


# --- sleep and wake -------------------------------------------------------------------------------


def test_an_explicit_sleep_goes_to_the_object_store_and_the_next_call_wakes_it(sessions):
    rt = sessions.open("sleeper")
    rt.inject("tool", lambda v: v + 1)
    rt.execute("state = {'n': 5}")
    sessions.sleep("sleeper")
    assert sessions.where("sleeper") == ""
    assert rt.execute("state['n'] = tool(state['n'])\nstate['n']").value_repr == "6"
    assert sessions.where("sleeper") in nodes_alive()


def test_idle_sessions_sleep_and_nodes_stay_under_their_cap(cluster, tmp_path_factory):
    path = tmp_path_factory.mktemp("snapshots")
    sleepy = cc.connect(cluster.address, space="sleepy", idle_s=0.5, max_sessions=1, store=path)
    first = sleepy.open("s0")
    first.execute("v = 0")
    assert sleepy.wait_moved("s0", WAIT_S)  # idle for idle_s: asleep
    assert sleepy.where("s0") == ""
    assert any(p.name.startswith(".") is False for p in path.iterdir())  # its snapshot is a file
    # Four sessions on three nodes capped at one each: the least recently used one sleeps.
    handles = [sleepy.open(f"c{i}") for i in range(4)]
    for i, rt in enumerate(handles):
        assert rt.execute(f"v = {i}").ok
    assert all(load["sessions"] <= 1 for load in sleepy.load())
    assert [rt.retrieve("v") for rt in handles] == [0, 1, 2, 3]
    assert first.retrieve("v") == 0  # woke from its file


def test_a_node_over_its_memory_cap_sleeps_its_least_recently_used_session(cluster):
    capped = cc.connect(cluster.address, space="memory", idle_s=None, max_memory_mb=150)
    by_node: dict[str, list] = {}
    for i in range(6):
        rt = capped.open(f"m{i}")
        rt.execute(f"mine = {i}")
        by_node.setdefault(rt.node_id, []).append(rt)
    older, newer = next(pair for pair in by_node.values() if len(pair) >= 2)[:2]
    assert capped.where(older.session_id) != ""
    newer.execute("import numpy as np\nbig = np.ones(25_000_000)")  # 200 MB on that node
    assert capped.wait_moved(older.session_id, WAIT_S)  # evicted: asleep, not lost
    assert capped.where(older.session_id) == ""
    assert capped.where(newer.session_id) != ""  # the one in use stays
    assert older.retrieve("mine") == int(older.session_id[1:])


def test_a_store_can_be_any_object_with_put_and_get(cluster, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("custom"))

    class Store:  # defined here: Ray sends it to the nodes by value
        def __init__(self, root: str) -> None:
            self.root = root

        def put(self, key: str, data: bytes) -> None:
            with open(os.path.join(self.root, key + ".snap"), "wb") as f:
                f.write(data)

        def get(self, key: str) -> bytes:
            with open(os.path.join(self.root, key + ".snap"), "rb") as f:
                return f.read()

    custom = cc.connect(cluster.address, space="custom", idle_s=None, store=Store(root))
    rt = custom.open("c")
    rt.execute("z = 'kept'")
    custom.sleep("c")
    assert any(name.endswith(".snap") for name in os.listdir(root))
    assert rt.retrieve("z") == "kept"
    lost = custom.open("lost-snapshot")
    lost.execute("w = 1")
    custom.sleep("lost-snapshot")
    for name in os.listdir(root):  # the store loses what it held
        os.remove(os.path.join(root, name))
    with pytest.raises(CaveRuntimeError, match="could not start.*KeyError|FileNotFoundError"):
        lost.variables()
    custom.close("lost-snapshot")  # it can still be closed
    assert "lost-snapshot" not in custom.ids()
    assert rt.retrieve("z") == "kept"  # the awake session did not notice
    with pytest.raises(CaveUsageError, match="put"):
        cc.connect(cluster.address, space="bad", store=object())


# --- node loss (last: these remove a node for real) ----------------------------------------------


def _open_on(sessions, node: str, prefix: str, **options):
    """Open sessions until one lands on ``node`` (placement is by load, not by request)."""
    for i in range(12):
        rt = sessions.open(f"{prefix}-{i}", **options)
        if rt.node_id == node:
            return rt
    raise AssertionError(f"no session landed on {node}")


def test_a_killed_host_actor_is_a_lost_node_for_its_sessions(sessions):
    rt = sessions.open("host-kill", durable="cell")
    rt.execute("v = 1")
    host = sessions.hosts()[rt.node_id]
    worker = ray.get(host.info.remote())["workers"]["host-kill"]
    ray.kill(host)  # the actor's process dies; its node lives on
    assert rt.retrieve("v") == 1  # back from its last commit, on a new host
    assert wait_gone({worker}, timeout=WAIT_S) == set()  # the old worker did not outlive its host


@pytest.mark.slow
def test_a_lost_node_loses_nothing_acknowledged_in_durable_mode_and_says_so_otherwise(cluster):
    # A space of its own: its nodes start even, so placement by load reaches the victim soon.
    sessions = cc.connect(cluster.address, space="loss", idle_s=None)
    victim = cluster.worker_list[0]
    durable = _open_on(sessions, victim.node_id, "durable", durable="cell")
    for i in range(3):
        assert durable.execute(f"n{i} = {i}").ok
    durable.inject("frame", pd.DataFrame({"a": [1, 2]}))
    empty = _open_on(sessions, victim.node_id, "empty")  # never snapshotted
    empty.execute("gone = 1")
    default = _open_on(sessions, victim.node_id, "default")
    default.execute("kept = 1")
    for _ in range(6):  # a snapshot (kept = 1), then a change on the victim that has none
        sessions.sleep(default.session_id)
        default.execute("later = 2")
        if default.node_id == victim.node_id:
            break
    assert default.node_id == victim.node_id

    started = threading.Event()
    results = []
    durable.inject("started", lambda: started.set())
    inflight = threading.Thread(target=lambda: results.append(
        durable.execute("started()\nn0 = 'changed'\nwhile True:\n    pass", timeout=120)))
    inflight.start()
    assert started.wait(WAIT_S)
    cluster.remove_node(victim)
    inflight.join(WAIT_S)

    # The cell in flight failed as after a crash: the session is as it was before it.
    assert results and results[0].error.kind == "crash" and results[0].rolled_back
    assert durable.node_id != victim.node_id and durable.node_id in nodes_alive()
    assert [durable.retrieve(f"n{i}") for i in range(3)] == [0, 1, 2]
    assert durable.retrieve("frame")["a"].tolist() == [1, 2]

    with pytest.raises(cc.SessionLostError) as lost:
        default.execute("later")
    assert lost.value.variables_lost and lost.value.restored_seq >= 1
    # Raised once; the session now is its last snapshot, on a live node.
    assert default.retrieve("kept") == 1
    with pytest.raises(VariableNotFoundError):
        default.retrieve("later")
    with pytest.raises(cc.SessionLostError, match="empty namespace"):
        empty.variables()
    assert empty.variables() == []
