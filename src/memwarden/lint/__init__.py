"""``memwarden lint``: find the playbook's memory anti-patterns in Python code.

Rules (each class's docstring is its user-facing explanation; ``memwarden lint
--explain CODE`` prints it):

* ``MW000`` unparsable — a file that cannot be parsed is reported and skipped.
* ``MW101`` cache-on-method — ``functools.cache``/``lru_cache`` on an instance method.
* ``MW102`` unbounded-cache — a module/class-level container that only grows.
* ``MW201`` whole-file-read — ``read()``/``readlines()``/``read_text()`` of a whole file (info).
* ``MW301`` deep-clone — ``json.loads(json.dumps(x))``, ``pickle`` round trips, ``deepcopy``.
* ``MW401`` listener-not-removed — a callback registered in ``__init__``/a loop, never removed.
* ``MW501`` unclosed-resource — ``open()``/sockets/temp files/sqlite not closed.
* ``MW601`` logger-per-call — ``logging.getLogger(non-constant)`` inside a function.

Runs on :class:`memwarden.incremental.IncrementalEngine`: only changed files are
re-checked, in parallel, with results persisted in ``.memwarden-cache/``.
"""

from __future__ import annotations

from memwarden.lint.config import LintConfig, load_lint_config
from memwarden.lint.model import Finding, Rule
from memwarden.lint.rules import RULES
from memwarden.lint.runner import LintResult, check_source, lint_paths

__all__ = [
    "RULES",
    "Finding",
    "LintConfig",
    "LintResult",
    "Rule",
    "check_source",
    "lint_paths",
    "load_lint_config",
]
