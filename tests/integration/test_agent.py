"""The agent in a real process: attach from another process, security and bounds."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memwarden.agent import MAX_REQUEST_BYTES, Agent, AgentError, Client, socket_path

TARGET = """
    import os, sys, time
    import memwarden
    hold = [bytearray(2**20) for _ in range(40)]          # 40 MiB the snapshot must see
    for b in hold:
        b[::4096] = b"x" * 256
    print("ready", flush=True)
    sys.stdin.readline()                                   # until the test is done
"""


@pytest.fixture
def target(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A real Python process started with MEMWARDEN_AGENT=1, holding 40 MiB."""
    prog = tmp_path / "target.py"
    prog.write_text(textwrap.dedent(TARGET))
    env = dict(os.environ, MEMWARDEN_AGENT="1")
    proc = subprocess.Popen(
        [sys.executable, str(prog)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while not socket_path(proc.pid).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        yield proc
    finally:
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        proc.wait(10)


def _memwarden(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memwarden", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_attach_takes_a_snapshot_from_another_process(target: subprocess.Popen[str]) -> None:
    """`memwarden attach PID snapshot` (a separate process) reads the target's own figures."""
    done = _memwarden("attach", str(target.pid), "snapshot", "--json")
    assert done.returncode == 0, done.stderr
    snap = json.loads(done.stdout)
    assert snap["pid"] == target.pid
    assert snap["rss_bytes"] > 40 * 2**20
    assert snap["budget_bytes"] > 0


def test_attach_runs_a_live_profile(target: subprocess.Popen[str]) -> None:
    """Start profiling, read top sites and stacks, stop — all through the agent."""
    with Client(target.pid) as client:
        assert client.request("profile.start")["running"]
        top = client.request("profile.top", n=5, kind="allocations")
        assert top["kind"] == "allocations"
        assert isinstance(top["top"], list)
        stacks = client.request("profile.stacks", n=5, kind="allocations")
        assert isinstance(stacks["collapsed"], list)
        assert not client.request("profile.stop")["running"]


def test_attach_dumps_the_heap(target: subprocess.Popen[str], tmp_path: Path) -> None:
    """A heap dump asked for through the agent lands in a new file."""
    out = tmp_path / "t.heapsnapshot"
    done = _memwarden("attach", str(target.pid), "dump", str(out), "--json")
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 1000
    assert json.loads(out.read_text())["snapshot"]["meta"]["node_fields"][0] == "type"


def test_no_agent_says_how_to_enable_one() -> None:
    """Without an agent, attach explains the three ways to start one, exit 1."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        done = _memwarden("attach", str(proc.pid), "snapshot")
    finally:
        proc.kill()
        proc.wait()
    assert done.returncode == 1
    assert "MEMWARDEN_AGENT=1" in done.stderr
    assert "--inject" in done.stderr


@pytest.fixture
def local_agent(tmp_path: Path) -> Iterator[Agent]:
    a = Agent(tmp_path / "a.sock", max_connections=4, timeout_s=5).start()
    try:
        yield a
    finally:
        a.stop()


def test_malformed_and_oversized_requests_get_errors_and_the_agent_keeps_serving(
    local_agent: Agent,
) -> None:
    """Garbage gets bad_request on the same connection; an oversized line gets too_large."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(local_agent.path))
        s.sendall(b"{not json\n")
        reply = json.loads(s.makefile().readline())
        assert reply["error"]["code"] == "bad_request"
        s.sendall(b'{"v": 1, "id": 2, "cmd": "nope"}\n')
        assert json.loads(s.makefile().readline())["error"]["code"] == "unknown_command"
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(local_agent.path))
        s.sendall(b"x" * (MAX_REQUEST_BYTES + 10))
        assert json.loads(s.makefile().readline())["error"]["code"] == "too_large"
    with Client(path=local_agent.path) as c:
        assert c.request("hello")["protocol"] == 1


def test_another_uid_is_refused() -> None:
    """A peer of another uid is refused by SO_PEERCRED even if the socket were reachable."""
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another uid")
    import shutil
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="memwarden-agent-test-"))
    shared.chmod(0o755)  # reachable by anyone: only the peer check stands in the way
    local_agent = Agent(shared / "a.sock").start()
    local_agent.path.chmod(0o666)  # even a misconfigured socket mode is not enough
    try:
        _refused_as_nobody(local_agent)
    finally:
        local_agent.stop()
        shutil.rmtree(shared, ignore_errors=True)


def _refused_as_nobody(local_agent: Agent) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(local_agent.path))
                s.settimeout(10)
                os.write(w, s.recv(4096))  # the agent speaks first: the refusal
        except OSError as exc:
            os.write(w, json.dumps({"error": {"code": f"child: {exc}"}}).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as fh:
        reply = json.loads(fh.read())
    assert reply["error"]["code"] == "forbidden"
    assert local_agent.refused >= 1


def test_a_hundred_clients_are_bounded_and_the_host_is_unaffected(local_agent: Agent) -> None:
    """100 concurrent connections: at most 4 are served at once, the rest told busy."""
    socks = []
    try:
        for _ in range(100):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(local_agent.path))
            socks.append(s)
        time.sleep(0.3)
        threads_before = threading.active_count()
        assert threads_before < 20  # 4 client threads at most, not 100
        t = threading.Thread(target=lambda: None)
        t.start()  # the host can still start threads
        t.join()
        busy = 0
        for s in socks:
            s.settimeout(0.2)
            with contextlib.suppress(TimeoutError, OSError):
                if b"busy" in s.recv(4096):
                    busy += 1
        assert busy >= 90
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 5
    while True:  # the slots come back once the clients are gone
        try:
            with Client(path=local_agent.path) as c:
                assert c.request("hello")["pid"] == os.getpid()
            break
        except AgentError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_the_idle_agent_never_wakes_up(local_agent: Agent) -> None:
    """The accept thread blocks: no context switches over two idle seconds."""
    assert local_agent._thread is not None
    tid = local_agent._thread.native_id
    status = Path(f"/proc/self/task/{tid}/status")

    def switches() -> int:
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])

    time.sleep(0.3)  # let the new thread reach accept()
    before = switches()
    time.sleep(2)
    assert switches() == before


def test_stop_removes_the_socket(tmp_path: Path) -> None:
    a = Agent(tmp_path / "s.sock").start()
    assert a.path.exists()
    a.stop()
    assert not a.path.exists()
    with pytest.raises(AgentError) as err:
        Client(path=a.path)
    assert err.value.code == "not_running"


def test_a_non_socket_in_the_way_is_refused(tmp_path: Path) -> None:
    """A regular file (or anything but a socket) at the path is never removed."""
    from memwarden.exceptions import ConfigurationError

    p = tmp_path / "x.sock"
    p.write_text("keep")
    with pytest.raises(ConfigurationError, match="not a socket"):
        Agent(p).start()
    assert p.read_text() == "keep"


def test_inject_starts_an_agent_through_gdb() -> None:
    """A process started without an agent gets one with --inject (gdb), then answers."""
    import shutil

    if shutil.which("gdb") is None:
        pytest.skip("gdb is not installed")
    if os.geteuid() != 0 and Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip() != "0":
        pytest.skip("ptrace of another process is not permitted here (yama ptrace_scope)")
    proc = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(0.05)"])
    try:
        time.sleep(0.5)
        done = _memwarden("attach", "--inject", str(proc.pid), "snapshot", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["pid"] == proc.pid
        assert proc.poll() is None  # the target lives on
    finally:
        proc.kill()
        proc.wait()


def test_run_agent_starts_an_agent_in_the_target(tmp_path: Path) -> None:
    """`memwarden run --agent` gives the Python target an agent (through the start-up shim)."""
    prog = tmp_path / "t.py"
    prog.write_text(
        "import memwarden.agent\nprint('agent', memwarden.agent.agent() is not None, flush=True)\n"
    )
    done = _memwarden("run", "-q", "--agent", "-o", str(tmp_path / "t.jsonl"), str(prog))
    assert done.returncode == 0, done.stderr
    assert "agent True" in done.stdout
