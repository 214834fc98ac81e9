"""A corpus of real memory leaks and of look-alikes that are not leaks.

Each case is a factory returning ``(fn, cleanup)``: ``fn`` is one "request" of a
program, ``cleanup`` undoes whatever the case left behind so the test process
stays clean. ``LEAKS`` must be reported by ``check_leaks`` with default settings,
``NOT_LEAKS`` must not.
"""

from tests.leak_corpus.cases import LEAKS, NOT_LEAKS, Case

__all__ = ["LEAKS", "NOT_LEAKS", "Case"]
