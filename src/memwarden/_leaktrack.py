"""Leak-tracking helpers shared by the disposal and pool patterns: where an object was made."""

from __future__ import annotations

import os
import sys

_MEMWARDEN_DIR = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH120, PTH100


def creation_site(limit: int = 8) -> str:
    """The caller's stack outside memwarden, most recent call last.

    Args:
        limit: at most this many frames, counted from the first frame outside memwarden.

    Returns:
        The formatted stack, or ``"<unknown>"`` when every frame is inside memwarden.
    """
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_MEMWARDEN_DIR):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "<unknown>"
    import traceback  # only in debug mode: keeps importing the patterns cheap

    return "".join(traceback.format_stack(frame, limit=limit)).rstrip()
