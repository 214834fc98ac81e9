"""memwarden run's start-up shim: profile this Python process, then run the real sitecustomize.

``memwarden run`` puts this file's directory, which holds nothing else, first on
``PYTHONPATH``, so every Python process of the run imports it at start-up without
seeing memwarden's own site-packages (a grandchild ``/usr/bin/python3`` must not
import click from memwarden's virtualenv). It loads memwarden from the directory
named by ``MEMWARDEN_RUN_PKG`` only when this interpreter has the same cache tag
as the one memwarden runs on (the same Python version and implementation, so
its compiled extension fits), and otherwise does nothing. Then it runs the
``sitecustomize`` it shadows, if any. It never raises.
"""

# os.path, not pathlib: this runs at the start of every Python process of the run,
# and pathlib is not imported at interpreter start-up.
# ruff: noqa: PTH100, PTH118, PTH120

from __future__ import annotations

import os
import sys


def _profile() -> None:
    pkg_parent = os.environ.get("MEMWARDEN_RUN_PKG", "")
    if not pkg_parent or os.environ.get("MEMWARDEN_RUN_CACHE_TAG") != sys.implementation.cache_tag:
        return  # another interpreter: degrade to nothing
    try:
        if "memwarden" not in sys.modules:
            import importlib.util

            pkg = os.path.join(pkg_parent, "memwarden")
            spec = importlib.util.spec_from_file_location(
                "memwarden", os.path.join(pkg, "__init__.py"), submodule_search_locations=[pkg]
            )
            if spec is None or spec.loader is None:
                return
            module = importlib.util.module_from_spec(spec)
            sys.modules["memwarden"] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules["memwarden"]
                raise
        from memwarden.report._bootstrap import install_from_env

        install_from_env()
    except Exception:  # the program runs unprofiled rather than not at all
        return


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        import importlib.machinery
        import importlib.util

        path = [p for p in sys.path if os.path.abspath(p or ".") != here]
        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
        if spec is None or spec.loader is None:
            return
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)
    except Exception:
        return


_profile()
_chain()
