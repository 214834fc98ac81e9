"""Profile a program end to end: trace files, the run engine, terminal and HTML reports, the demo.

Modules: :mod:`~memwarden.report.trace` (the ``memwarden.trace/1`` reader and
writer), :mod:`~memwarden.report.runner` (run a child and sample its process
tree), :mod:`~memwarden.report.summary` (peak, growth, sites, operations),
:mod:`~memwarden.report.terminal` and :mod:`~memwarden.report.html` (rendering),
:mod:`~memwarden.report.demo` (``memwarden demo``). Nothing heavy (matplotlib,
rich) is imported until a report is rendered.
"""

from __future__ import annotations
