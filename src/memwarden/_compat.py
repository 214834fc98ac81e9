"""Small shims over differences between the supported Python versions and platforms."""

from __future__ import annotations

import sys

__all__ = ["IS_LINUX"]

IS_LINUX = sys.platform.startswith("linux")
