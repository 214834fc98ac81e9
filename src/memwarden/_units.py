"""Parse and format byte sizes: ``"512 MiB"`` at the edges, ``int`` bytes inside.

``KB/MB/GB/TB`` are decimal and ``KiB/MiB/GiB/TiB`` binary, as Kubernetes writes
quantities; Kubernetes' short forms ``K/M/G/T`` (decimal) and ``Ki/Mi/Gi/Ti``
(binary) are accepted too. Units are case-insensitive, so ``kb`` is decimal and
``kib`` is binary; ``B`` or no unit means bytes.

Sizes are bounded: anything above :data:`MAX_SIZE_BYTES` (2**63 - 1, the largest
byte count the kernel or a 64-bit counter holds) is refused at once, before any
arithmetic, so ``"1e999999"`` fails in microseconds instead of building a
million-digit number. Digits are ASCII only (``"١٠ MB"`` is refused).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from memwarden.exceptions import ConfigurationError

__all__ = ["MAX_SIZE_BYTES", "SizeLike", "format_size", "parse_size"]

#: The largest size parse_size returns: 2**63 - 1 bytes (8 EiB).
MAX_SIZE_BYTES = 2**63 - 1

# A size written out is short; a longer string is not one (and must not be echoed whole).
_MAX_TEXT = 64

SizeLike = int | float | str

_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_BINARY = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}

_SIZE_RE = re.compile(
    r"""^\s*(?P<num>[+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?)\s*
        (?P<unit>(?:[kmgtp](?:i?b?|b)?|b|bytes?)?)\s*$""",
    re.IGNORECASE | re.VERBOSE | re.ASCII,
)

_HINT = "expected a size like 1048576, '512 MiB', '2 GB', '300Mi' or '1.5G'"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_TEXT + 2 else f"{text[:_MAX_TEXT]}... ({len(text)} characters)"


def _too_large(value: object, where: str, source: str | None) -> ConfigurationError:
    return ConfigurationError(
        f"{_shown(value)}{where}: too large; sizes are at most {MAX_SIZE_BYTES} bytes (8 EiB)",
        value=value,
        source=source,
    )


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
                f"{_shown(value)}{where}: a size cannot be negative", value=value, source=source
            )
        if value > MAX_SIZE_BYTES:
            raise _too_large(value, where, source)
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or value < 0:
            raise ConfigurationError(
                f"{value!r}{where}: a size must be a finite, non-negative number",
                value=value,
                source=source,
            )
        if value > MAX_SIZE_BYTES:
            raise _too_large(value, where, source)
        return int(value)
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{value!r}{where} is a {type(value).__name__}: {_HINT}", value=value, source=source
        )
    match = _SIZE_RE.match(value) if len(value) <= _MAX_TEXT else None
    if match is None and any(c.isdigit() and not c.isascii() for c in value[:_MAX_TEXT]):
        raise ConfigurationError(
            f"{_shown(value)}{where}: only ASCII digits 0-9 are read in sizes; {_HINT}",
            value=value,
            source=source,
        )
    if match is None:
        raise ConfigurationError(f"{_shown(value)}{where}: {_HINT}", value=value, source=source)
    try:
        number = Decimal(match.group("num"))
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        raise ConfigurationError(f"{value!r}{where}: {_HINT}", value=value, source=source) from None
    factor = _unit_factor(match.group("unit"))
    # Decide from the exponent alone before multiplying: 1e999999 must not be expanded.
    # adjusted() is the power of ten of the leading digit; 10**19 > MAX_SIZE_BYTES.
    if number and number.adjusted() + len(str(factor)) - 1 > 19:
        raise _too_large(value, where, source)
    if number.adjusted() < -30:  # far below one byte (1e-999999): zero, without the work
        return 0
    result = int(number * factor)
    if result > MAX_SIZE_BYTES:
        raise _too_large(value, where, source)
    return result


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
