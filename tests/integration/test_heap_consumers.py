"""Real consumers read memwarden's heap snapshots: memlab (npm) and Chrome DevTools' own parser.

memlab is installed from the npm registry on first use into a git-ignored cache
(``.memwarden-test-cache/memlab``, or ``$MEMWARDEN_TEST_CACHE``); without node, npm
or the registry the tests skip with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from memwarden import heapgraph

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MEMWARDEN_TEST_CACHE", ROOT / ".memwarden-test-cache"))
NODE = shutil.which("node") or "/usr/bin/node"

pytestmark = pytest.mark.slow

PROGRAM = """
import sys
from memwarden import heap

class Planted:
    def __init__(self, n):
        self.payload = bytearray(n)
        self.tag = "tag-%d" % n

REGISTRY = {"planted": [Planted(40_000), Planted(60_000)]}
shared = bytearray(25_000)
REGISTRY["a"] = [shared]
REGISTRY["b"] = [shared]
del shared
heap.dump(sys.argv[1])
"""

MEMLAB_SCRIPT = r"""
const {getFullHeapFromFile} = require('@memlab/heap-analysis');
(async () => {
  const heap = await getFullHeapFromFile(process.argv[2]);
  const out = [];
  heap.nodes.forEach(node => {
    if (node.name !== process.argv[3]) return;
    const path = [];
    let cur = node;
    while (cur && cur.pathEdge && path.length < 64) {
      path.unshift(String(cur.pathEdge.name_or_index));
      cur = cur.pathEdge.fromNode;
    }
    out.push({id: node.id, retained: node.retainedSize, path,
              dominator: node.dominatorNode ? node.dominatorNode.id : null});
  });
  process.stdout.write(JSON.stringify(out) + "\n");
})().catch(e => { console.error(String(e && e.stack || e)); process.exit(3); });
"""


def _memlab_dir() -> Path:
    """The cached memlab install, installing it from npm the first time."""
    target = CACHE / "memlab"
    marker = target / "node_modules" / "@memlab" / "heap-analysis" / "package.json"
    if marker.exists():
        return target
    npm = shutil.which("npm")
    if npm is None or not Path(NODE).exists():
        pytest.skip("memlab needs node and npm (not found on PATH)")
    target.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PUPPETEER_SKIP_DOWNLOAD="1", PUPPETEER_SKIP_CHROMIUM_DOWNLOAD="1")
    cmd = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(target)]
    cmd += ["@memlab/core", "@memlab/heap-analysis"]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip("npm install of memlab timed out (registry unreachable?)")
    if proc.returncode != 0 or not marker.exists():
        pytest.skip(f"npm install of memlab failed: {proc.stderr.strip()[-300:]}")
    return target


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("heap") / "planted.heapsnapshot"
    prog = path.parent / "planted.py"
    prog.write_text(PROGRAM)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    subprocess.run([sys.executable, str(prog), str(path)], env=env, check=True, timeout=120)
    return path


def test_memlab_agrees_on_retained_sizes_and_paths(snapshot: Path) -> None:
    """memlab's own analysis sees the planted objects, their retained sizes and retainer path."""
    modules = _memlab_dir() / "node_modules"
    script = snapshot.parent / "read.js"
    script.write_text(MEMLAB_SCRIPT)
    proc = subprocess.run(
        [NODE, str(script), str(snapshot), "__main__.Planted"],
        env=dict(os.environ, NODE_PATH=str(modules)),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=snapshot.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(found) == 2
    g = heapgraph.load(snapshot)
    ours = {g.ids[v]: g.retained_sizes()[v] for v in g.find("__main__.Planted")}
    for obj in found:
        assert obj["retained"] == ours[obj["id"]]
        assert obj["path"][:3] == ["__main__", "REGISTRY", "planted"]
    assert sorted(o["retained"] for o in found)[1] >= 60_000
    assert sorted(o["retained"] for o in found)[1] < 60_000 + 1024
    # The shared bytearray is retained by neither list: its dominator is the dict.
    shared = _memlab_nodes(snapshot, modules, "bytearray")
    (entry,) = [s for s in shared if s["path"][:3] == ["__main__", "REGISTRY", "a"]] or [
        s for s in shared if s["path"][:3] == ["__main__", "REGISTRY", "b"]
    ]
    (v,) = [g.index_of(entry["id"])]
    assert entry["dominator"] == g.ids[g.dominators()[v]]
    assert g.names[g.dominators()[v]] == "dict"


def _memlab_nodes(snapshot: Path, modules: Path, name: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [NODE, str(snapshot.parent / "read.js"), str(snapshot), name],
        env=dict(os.environ, NODE_PATH=str(modules)),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=snapshot.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
