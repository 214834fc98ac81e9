"""``memwarden lint`` on a labelled real-world corpus: precision per rule, time against pylint.

The corpus is data, not copies: ``bench/lint_corpus/packages.txt`` pins the
distributions, whose wheels are downloaded from PyPI and unpacked (``.py`` files only)
into ``bench/.cache/lint-corpus/<name>==<version>/``; ``bench/lint_corpus/labels.csv``
holds one verdict per finding, written by reading the flagged code:

    package,path,line,rule,verdict,line_hash,reason
    dask==2024.8.0,dask/base.py,1223,MW102,true,3f2a…,"every object tokenized is kept"

A label matches a finding by package, path, rule and line; when the line moved, by the
hash of the flagged line's text (``line_hash``). A finding without a label fails the
bench until it is labelled (``python bench/bench_lint_corpus.py --draft`` prints draft
rows to fill in). MW201 (whole-file read) is advice, reported as counts apart and not
labelled.

Timing: whole CLI processes on the same files, alternated: memwarden cold (empty
cache), ruff ``--select B019``, pylint ``--enable=method-cache-max-size-none`` (W1518)
with ``-j 2``; then warm memwarden re-runs. Medians are reported.

    python bench/run.py lint_corpus
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "bench" / "lint_corpus"
PACKAGES = CORPUS / "packages.txt"
LABELS = CORPUS / "labels.csv"
CACHE = ROOT / "bench" / ".cache" / "lint-corpus"
VENV_BIN = Path(sys.executable).parent
INFORMATIONAL = frozenset({"MW201"})
FIELDS = ("package", "path", "line", "rule", "verdict", "line_hash", "reason")
PYLINT_TIMEOUT_S = 2400
PYLINT_ROUNDS = int(os.environ.get("MW_BENCH_PYLINT_ROUNDS", "1"))
PIP_DOWNLOAD = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
PIP_DOWNLOAD += ["--disable-pip-version-check", "-q", "-d"]
RUFF = [str(VENV_BIN / "ruff"), "check", "--select", "B019", "--no-cache", "--isolated"]
RUFF += ["--exit-zero", "--output-format", "concise"]
PYLINT = [str(VENV_BIN / "pylint"), "--disable=all", "--enable=method-cache-max-size-none"]
PYLINT += ["-j", "2", "--persistent=n", "-sn", "--exit-zero"]


def pinned(path: Path = PACKAGES) -> list[str]:
    """The ``name==version`` lines of the package list."""
    specs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            specs.append(line)
    return specs


def fetch(specs: list[str], cache: Path = CACHE) -> dict[str, Path]:
    """Download and unpack each pinned wheel once; return ``spec -> directory``.

    Raises:
        RuntimeError: ``pip download`` failed (offline, or the pin does not exist).
    """
    cache.mkdir(parents=True, exist_ok=True)
    ignore = cache.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# downloaded by the benches: never committed\n*\n")
    # The corpus is its own project: paths are shown relative to it, and no settings of
    # the repository around it ([tool.memwarden.lint] exclusions) apply.
    project = cache / "pyproject.toml"
    if not project.exists():
        project.write_text("# the lint corpus: default settings\n")
    wheels = cache / "_wheels"
    wheels.mkdir(exist_ok=True)
    missing = [spec for spec in specs if not (cache / spec / ".complete").is_file()]
    if missing:
        # One pip process for every missing wheel: pip's start-up is most of the cost.
        proc = subprocess.run(
            [*PIP_DOWNLOAD, str(wheels), *missing],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pip download failed: {proc.stderr.strip()[-500:]}")
    out: dict[str, Path] = {}
    for spec in specs:
        target = cache / spec
        if spec in missing:
            name, _, version = spec.partition("==")
            found = [
                w
                for w in wheels.glob("*.whl")
                if _normalize(w.name.split("-")[0]) == _normalize(name)
                and w.name.split("-")[1] == version
            ]
            if not found:
                raise RuntimeError(f"pip download {spec}: no wheel found in {wheels}")
            target.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(found[0]) as archive:
                for member in archive.namelist():
                    # Only sources, only inside the target (a wheel is untrusted data).
                    if member.endswith((".py", ".pyi")) and ".." not in Path(member).parts:
                        archive.extract(member, target)
            (target / ".complete").write_text(found[0].name + "\n")
        out[spec] = target
    return out


def _normalize(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def line_hash(text: str) -> str:
    """A short hash of a line's text (stripped), to recognise a flagged line that moved."""
    return hashlib.blake2b(text.strip().encode(), digest_size=6).hexdigest()


@dataclass(frozen=True)
class Label:
    package: str
    path: str
    line: int
    rule: str
    verdict: bool
    line_hash: str
    reason: str


def load_labels(path: Path = LABELS) -> list[Label]:
    """Every label row.

    Raises:
        ValueError: a malformed row (names the row).
    """
    labels = []
    with path.open(encoding="utf-8", newline="") as fh:
        for number, row in enumerate(csv.DictReader(fh), start=2):
            try:
                verdict = {"true": True, "false": False}[row["verdict"].strip().lower()]
                labels.append(
                    Label(
                        row["package"],
                        row["path"],
                        int(row["line"]),
                        row["rule"],
                        verdict,
                        row["line_hash"],
                        row["reason"],
                    )
                )
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{path}:{number}: bad label row {row!r} ({exc})") from exc
    return labels


@dataclass
class Comparison:
    """Findings matched against labels, per rule."""

    true: Counter[str] = field(default_factory=Counter)
    false: Counter[str] = field(default_factory=Counter)
    informational: Counter[str] = field(default_factory=Counter)
    unlabelled: list[dict[str, object]] = field(default_factory=list)
    moved: int = 0
    stale: list[Label] = field(default_factory=list)

    def precision(self, rule: str) -> float | None:
        n = self.true[rule] + self.false[rule]
        return self.true[rule] / n if n else None


def split_path(shown: str) -> tuple[str, str]:
    """``"dask==2024.8.0/dask/base.py"`` -> (``dask==2024.8.0``, ``dask/base.py``)."""
    package, _, rest = shown.partition("/")
    return package, rest


def compare(findings: list[dict[str, object]], labels: list[Label], root: Path) -> Comparison:
    """Match each finding (``--format json`` rows, paths relative to ``root``) to its label."""
    exact = {(lb.package, lb.path, lb.rule, lb.line): lb for lb in labels}
    by_hash: dict[tuple[str, str, str, str], list[Label]] = {}
    for lb in labels:
        by_hash.setdefault((lb.package, lb.path, lb.rule, lb.line_hash), []).append(lb)
    used: set[int] = set()
    result = Comparison()
    lines_of: dict[str, list[str]] = {}
    for f in findings:
        code = str(f["code"])
        if code in INFORMATIONAL:
            result.informational[code] += 1
            continue
        shown = str(f["path"])
        package, rel = split_path(shown)
        line = int(str(f["line"]))
        if shown not in lines_of:
            try:
                lines_of[shown] = (root / shown).read_text("utf-8", "replace").splitlines()
            except OSError:
                lines_of[shown] = []
        text = lines_of[shown][line - 1] if 0 < line <= len(lines_of[shown]) else ""
        label = exact.get((package, rel, code, line))
        if label is None:
            candidates = [
                lb
                for lb in by_hash.get((package, rel, code, line_hash(text)), [])
                if id(lb) not in used
            ]
            label = candidates[0] if candidates else None
            if label is not None:
                result.moved += 1
        if label is None:
            result.unlabelled.append({**f, "package": package, "rel": rel, "text": text})
            continue
        used.add(id(label))
        (result.true if label.verdict else result.false)[code] += 1
    result.stale = [lb for lb in labels if id(lb) not in used]
    return result


def draft_rows(unlabelled: list[dict[str, object]]) -> str:
    """CSV rows (verdict ``?``) for findings without a label, to be read and filled in."""
    out = []
    for f in unlabelled:
        row = [
            str(f["package"]),
            str(f["rel"]),
            str(f["line"]),
            str(f["code"]),
            "?",
            line_hash(str(f["text"])),
            str(f["message"])[:90],
        ]
        out.append(",".join(json.dumps(v) if "," in v or '"' in v else v for v in row))
    return "\n".join(out)


def _timed(cmd: list[str], timeout_s: float = 900) -> tuple[float, float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1) and "memwarden" in cmd:
        raise RuntimeError(f"{cmd[:4]} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return wall, cpu, proc.stdout


def lint(root: Path, cache: Path | None, out: Path) -> tuple[float, float, dict[str, object]]:
    """One ``memwarden lint`` CLI process over ``root`` (JSON written to ``out``)."""
    cmd = [sys.executable, "-m", "memwarden", "lint", ".", "--format", "json"]
    cmd += ["-o", str(out), "-q", "--exit-zero"]
    cmd += ["--no-cache"] if cache is None else ["--cache-dir", str(cache)]
    cwd = Path.cwd()
    os.chdir(root)
    try:
        wall, cpu, _ = _timed(cmd)
    finally:
        os.chdir(cwd)
    doc: dict[str, object] = json.loads(out.read_text())
    return wall, cpu, doc


def _lint_cmd(files: list[str], cache: Path | None, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "memwarden", "lint", *files, "--format", "json"]
    cmd += ["-o", str(out), "-q", "--exit-zero"]
    return cmd + (["--no-cache"] if cache is None else ["--cache-dir", str(cache)])


def _linted_files(root: Path) -> list[str]:
    sys.path.insert(0, str(ROOT / "src"))
    from memwarden.lint.config import LintConfig
    from memwarden.lint.runner import discover

    return discover([root], LintConfig(), root)


def _ok(good: bool) -> str:
    return "**met**" if good else "**missed**"


def precision_lines(
    doc: dict[str, object], files: list[str], root: Path, ruff_hits: int, pylint_hits: int
) -> list[str]:
    """The precision table and notes for one cold run's JSON document.

    Raises:
        SystemExit: findings without a label (their draft rows go to standard error).
    """
    summary = doc["summary"]
    assert isinstance(summary, dict)
    findings = doc["findings"]
    assert isinstance(findings, list)
    result = compare(findings, load_labels(), root)
    if result.unlabelled:
        print(draft_rows(result.unlabelled), file=sys.stderr)
        raise SystemExit(
            f"{len(result.unlabelled)} finding(s) have no label in {LABELS}: read the code, "
            "add a row for each (draft rows printed above), and run again"
        )
    by_package = Counter(split_path(str(f["path"]))[0] for f in findings)
    per_package = Counter(Path(f).relative_to(root).parts[0] for f in files)
    lines = [
        f"`memwarden lint` (default settings: tests and fixtures excluded) over "
        f"{int(summary['files'])} `.py` files of {len(per_package)} pinned wheels from PyPI "
        "(`bench/lint_corpus/packages.txt`), every finding compared with "
        "`bench/lint_corpus/labels.csv`, whose verdicts were written by reading the flagged "
        "code.",
        "",
        "| rule | findings | true | false | precision | target |",
        "|---|---|---|---|---|---|",
    ]
    rules = sorted(set(result.true) | set(result.false))
    for rule in rules:
        p = result.precision(rule)
        n = result.true[rule] + result.false[rule]
        lines.append(
            f"| {rule} | {n} | {result.true[rule]} | {result.false[rule]} | "
            f"{p:.0%} | >= 90%: {_ok(p is not None and p >= 0.9)} |"
        )
    for rule, n in sorted(result.informational.items()):
        lines.append(f"| {rule} (informational, not labelled) | {n} | – | – | – | – |")
    quiet = sorted({"MW101", "MW102", "MW301", "MW401", "MW501", "MW601"} - set(rules))
    lines += [
        "",
        f"- Rules with no finding on the corpus: {', '.join(quiet) or 'none'}.",
        f"- Unlabelled findings: {len(result.unlabelled)}; labels matched by line hash after "
        f"a move: {result.moved}; stale labels (no finding any more): {len(result.stale)}.",
        "- Files per package: "
        + ", ".join(f"{k} {v}" for k, v in sorted(per_package.items()))
        + ".",
        "- Findings per package: "
        + ", ".join(f"{k} {v}" for k, v in sorted(by_package.items()))
        + ".",
    ]
    if ruff_hits >= 0:
        lines.append(
            f"- Cache-on-method on the same files: memwarden MW101 "
            f"{result.true['MW101'] + result.false['MW101']} (unbounded ones as warnings, "
            f"bounded ones as info), ruff B019 {ruff_hits}, pylint W1518 "
            + (f"{pylint_hits}" if pylint_hits >= 0 else "(timed out)")
            + " (W1518 flags only `maxsize=None`/`cache`)."
        )
    return lines


def run(rounds: int = 3) -> str:
    specs = pinned()
    fetch(specs)
    root = CACHE
    load_labels()  # a malformed label file fails before the long part
    work = Path(tempfile.mkdtemp(prefix="mw-bench-lintc-"))
    files = _linted_files(root)
    load_before = os.getloadavg()[0]
    cold: list[float] = []
    cold_cpu: list[float] = []
    ruff: list[float] = []
    pylint: list[float] = []
    pylint_cpu: list[float] = []
    warm: list[float] = []
    out = work / "out.json"
    doc: dict[str, object] = {}
    ruff_hits = pylint_hits = -1
    pylint_timed_out = False
    for i in range(rounds):
        wall, cpu, doc = lint(root, None, out)
        cold.append(wall)
        cold_cpu.append(cpu)
        wall, _, text = _timed([*RUFF, *files])
        ruff.append(wall)
        ruff_hits = sum(1 for line in text.splitlines() if "B019" in line)
        if i < PYLINT_ROUNDS:  # pylint is the slow one (~0.2 s a file)
            try:
                wall, cpu, text = _timed([*PYLINT, *files], timeout_s=PYLINT_TIMEOUT_S)
                pylint_hits = sum(1 for line in text.splitlines() if "W1518" in line)
            except subprocess.TimeoutExpired:
                wall, cpu, pylint_timed_out = float(PYLINT_TIMEOUT_S), float("nan"), True
            pylint.append(wall)
            pylint_cpu.append(cpu)
    cache = work / "cache"
    lint(root, cache, out)  # fill the cache
    for _ in range(rounds):
        wall, _, warm_doc = lint(root, cache, out)
        warm.append(wall)
        warm_summary = warm_doc["summary"]
        assert isinstance(warm_summary, dict)
        assert warm_summary["checked"] == 0, warm_summary
    load_after = os.getloadavg()[0]
    cold_m, pylint_m, warm_m = (statistics.median(v) for v in (cold, pylint, warm))
    at_least = "> " if pylint_timed_out else ""
    lines = [
        "## lint: labelled real-world corpus (precision per rule, time vs ruff and pylint)",
        "",
        *precision_lines(doc, files, root, ruff_hits, -1 if pylint_timed_out else pylint_hits),
        "",
        f"Time, whole CLI processes on the same files (load average {load_before:.1f} before, "
        f"{load_after:.1f} after: a shared machine; medians of alternated rounds, pylint "
        f"{len(pylint)} round(s)):",
        "",
        "| run (same files) | wall, median | CPU s (median) | vs pylint | target |",
        "|---|---|---|---|---|",
        f"| memwarden cold (all rules, `--no-cache`) | {cold_m:.2f} s | "
        f"{statistics.median(cold_cpu):.1f} | {'< ' if at_least else ''}"
        f"{cold_m / pylint_m:.3f}x | within 2x of pylint: {_ok(cold_m <= 2 * pylint_m)} |",
        f"| memwarden warm (nothing changed) | {warm_m:.2f} s | – | {warm_m / cold_m:.1%} of "
        f"cold | <= 5% of cold: {_ok(warm_m <= 0.05 * cold_m)} |",
        f"| ruff `--select B019` | {statistics.median(ruff):.2f} s | – | "
        f"{statistics.median(ruff) / pylint_m:.3f}x | – |",
        f"| pylint W1518 only, `-j 2` | {at_least}{pylint_m:.2f} s | "
        f"{statistics.median(pylint_cpu):.1f} | 1 | – |",
        "",
        "Reproduce: `python bench/run.py lint_corpus` (downloads the wheels once into "
        "`bench/.cache/`); the precision table alone, without the slow pylint run: "
        "`python bench/bench_lint_corpus.py --precision`.",
    ]
    return "\n".join(lines) + "\n"


def _main() -> None:
    if "--draft" in sys.argv:
        root = CACHE
        fetch(pinned())
        with tempfile.TemporaryDirectory() as tmp:
            _, _, doc = lint(root, None, Path(tmp) / "out.json")
        findings = doc["findings"]
        assert isinstance(findings, list)
        result = compare(findings, load_labels() if LABELS.exists() else [], root)
        print(draft_rows(result.unlabelled))
        return
    if "--subset" in sys.argv:
        # Timing only, on every STEP-th file (both tools on the same files), for a quick
        # figure when pylint over the whole corpus takes too long on a loaded machine.
        step = int(sys.argv[sys.argv.index("--subset") + 1])
        fetch(pinned())
        files = _linted_files(CACHE)[::step]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.json"
            rows: dict[str, list[float]] = {
                "memwarden cold": [],
                "pylint W1518": [],
                "ruff B019": [],
            }
            for _ in range(2):
                rows["memwarden cold"].append(_timed(_lint_cmd(files, None, out))[0])
                rows["pylint W1518"].append(_timed([*PYLINT, *files], PYLINT_TIMEOUT_S)[0])
                rows["ruff B019"].append(_timed([*RUFF, *files])[0])
            cache = Path(tmp) / "cache"
            _timed(_lint_cmd(files, cache, out))
            rows["memwarden warm"] = [_timed(_lint_cmd(files, cache, out))[0] for _ in range(2)]
        base = statistics.median(rows["pylint W1518"])
        print(f"{len(files)} files (every {step}th), load {os.getloadavg()[0]:.1f}:")
        for name, values in rows.items():
            m = statistics.median(values)
            print(f"| {name} | {m:.2f} s | {m / base:.3f}x pylint |")
        return
    if "--precision" in sys.argv:
        fetch(pinned())
        files = _linted_files(CACHE)
        with tempfile.TemporaryDirectory() as tmp:
            _, _, doc = lint(CACHE, None, Path(tmp) / "out.json")
        print("\n".join(precision_lines(doc, files, CACHE, -1, -1)))
        return
    print(run())


if __name__ == "__main__":
    _main()
