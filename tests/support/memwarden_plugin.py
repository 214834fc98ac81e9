"""Shared settings for the pytester runs of memwarden's pytest plugin."""

from __future__ import annotations

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
