"""`import memwarden` stays cheap: no third-party package is imported with it."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = [
    "psutil",
    "click",
    "rich",
    "prometheus_client",
    "opentelemetry",
    "dask",
    "distributed",
    "pytest",
    "numpy",
    "matplotlib",
    "jsonschema",
]


def test_import_memwarden_pulls_no_heavy_dependency() -> None:
    """A fresh interpreter that imports memwarden (and calls rss()) has none of them loaded."""
    code = (
        "import sys, json, memwarden; memwarden.rss(); "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert "memwarden" in loaded
    assert not loaded & set(HEAVY), f"heavy modules imported: {sorted(loaded & set(HEAVY))}"


def test_every_export_resolves() -> None:
    """Every name in memwarden.__all__ loads from its module."""
    code = "import memwarden; [getattr(memwarden, n) for n in memwarden.__all__]; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_functions_named_like_their_modules_stay_callable() -> None:
    """memwarden.monitor() works after its submodule is imported (snapshot: test_snapshots)."""
    code = (
        "import memwarden\n"
        "import memwarden.monitoring\n"
        "m = memwarden.monitor(); assert m is memwarden.monitoring.monitor(); m.close()\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
