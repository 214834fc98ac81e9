"""Shared settings for the pytester runs of memwarden's pytest plugin."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

# pytest-memray (installed for the bench) acts on the same marker names; these runs
# are about memwarden's plugin, so it is switched off as a migrating user would. The
# other third-party plugins are switched off because configuring them costs seconds
# per in-process run and they play no part here.
QUIET_PLUGINS = (
    "-p",
    "no:memray",
    "-p",
    "no:hypothesispytest",
    "-p",
    "no:benchmark",
    "-p",
    "no:cov",
    "-p",
    "no:cacheprovider",
)
ARGS = (*QUIET_PLUGINS, "-p", "no:xdist")


@contextmanager
def untraced() -> Iterator[None]:
    """Suspend this thread's trace function (coverage's tracer under ``make test``).

    An in-process pytester run executes the inner tests under the outer process's
    coverage tracer, which allocates line data the first time each line runs; those
    bytes are attributed to the inner test. Checks of "nothing leaked at 1 B" run
    with the tracer suspended, as a user's run without --cov would.
    """
    tracer = sys.gettrace()
    sys.settrace(None)
    try:
        yield
    finally:
        sys.settrace(tracer)


def coverage_active() -> bool:
    """True when coverage is measuring this process."""
    cov = sys.modules.get("coverage")
    return cov is not None and cov.Coverage.current() is not None
