"""Small shims over differences between the supported Python versions and platforms."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ["IS_LINUX", "PY311", "make_module_callable"]

PY311 = sys.version_info >= (3, 11)
IS_LINUX = sys.platform.startswith("linux")


class _CallableModule(types.ModuleType):
    """A module that can be called: ``memwarden.snapshot()`` works as a function.

    ``memwarden.snapshot`` and ``memwarden.monitor`` name both a module and the
    function users call. Importing a submodule rebinds the package attribute to
    the module, so the module itself must be callable for ``memwarden.snapshot()``
    to work in every import order.
    """

    __call_target__: Callable[..., Any]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__call_target__(*args, **kwargs)


def make_module_callable(module_name: str, target: Callable[..., Any]) -> None:
    """Make ``sys.modules[module_name]`` callable, delegating to ``target``."""
    module = sys.modules[module_name]
    module.__class__ = _CallableModule
    module.__call_target__ = target  # type: ignore[attr-defined]
