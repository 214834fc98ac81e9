"""Parse and format byte sizes: ``"512 MiB"`` at the edges, ``int`` bytes inside.

``KB/MB/GB/TB`` are decimal and ``KiB/MiB/GiB/TiB`` binary, as Kubernetes writes
quantities; Kubernetes' short forms ``K/M/G/T`` (decimal) and ``Ki/Mi/Gi/Ti``
(binary) are accepted too. Units are case-insensitive, so ``kb`` is decimal and
``kib`` is binary; ``B`` or no unit means bytes.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from memwarden.exceptions import ConfigurationError

__all__ = ["SizeLike", "format_size", "parse_size"]

SizeLike = int | float | str

_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_BINARY = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}

_SIZE_RE = re.compile(
    r"""^\s*(?P<num>[+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)\s*
        (?P<unit>(?:[kmgtp](?:i?b?|b)?|b|bytes?)?)\s*$""",
    re.IGNORECASE | re.VERBOSE,
)

_HINT = "expected a size like 1048576, '512 MiB', '2 GB', '300Mi' or '1.5G'"


def _unit_factor(unit: str) -> int:
    u = unit.lower()
    if u in ("", "b", "byte", "bytes"):
        return 1
    prefix, rest = u[0], u[1:]
    if rest in ("i", "ib"):
        return _BINARY[prefix]
    return _DECIMAL[prefix]  # "" (Kubernetes "K"/"M"/"G") or "b"


def parse_size(value: SizeLike, *, source: str | None = None) -> int:
    """Return ``value`` as a whole number of bytes.

    Args:
        value: an ``int`` of bytes, a non-negative finite ``float``, or a string
            such as ``"512 MiB"``, ``"2GB"``, ``"300Mi"``, ``"1.5 G"``, ``"4096"``.
        source: where the value came from (``"environment"``, a file path),
            named in the error message.

    Returns:
        The size in bytes, rounded down to a whole byte.

    Raises:
        ConfigurationError: the value is negative, NaN, infinite, empty, of an
            unknown unit or not a size at all; the message names the value and source.
    """
    where = f" ({source})" if source else ""
    if isinstance(value, bool):
        raise ConfigurationError(f"{value!r}{where} is a bool: {_HINT}", value=value, source=source)
    if isinstance(value, int):
        if value < 0:
            raise ConfigurationError(
                f"{value!r}{where}: a size cannot be negative", value=value, source=source
            )
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or value < 0:
            raise ConfigurationError(
                f"{value!r}{where}: a size must be a finite, non-negative number",
                value=value,
                source=source,
            )
        return int(value)
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{value!r}{where} is a {type(value).__name__}: {_HINT}", value=value, source=source
        )
    match = _SIZE_RE.match(value)
    if match is None:
        raise ConfigurationError(f"{value!r}{where}: {_HINT}", value=value, source=source)
    try:
        number = Decimal(match.group("num"))
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        raise ConfigurationError(f"{value!r}{where}: {_HINT}", value=value, source=source) from None
    return int(number * _unit_factor(match.group("unit")))


_FORMAT_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_size(size_bytes: int, *, binary: bool = True, precision: int = 1) -> str:
    """Return a human-readable size such as ``"1.5 MiB"`` (or ``"1.6 MB"`` with ``binary=False``).

    ``parse_size(format_size(n))`` is within one display step of ``n``, and exact
    for sizes below 1 KiB. Negative sizes (deltas) keep their sign.
    """
    sign = "-" if size_bytes < 0 else ""
    n = abs(int(size_bytes))
    step = 1024 if binary else 1000
    units = _FORMAT_UNITS if binary else ("B", "KB", "MB", "GB", "TB", "PB")
    if n < step:
        return f"{sign}{n} B"
    value = float(n)
    index = 0
    while value >= step and index < len(units) - 1:
        value /= step
        index += 1
    return f"{sign}{value:.{precision}f} {units[index]}"
