"""Hypothesis strategies shared by memwarden's tests."""

from __future__ import annotations

from hypothesis import strategies as st

#: Unit spellings parse_size accepts, with their factor.
UNITS: dict[str, int] = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}

sizes = st.integers(min_value=0, max_value=2**50)
units = st.sampled_from(sorted(UNITS))


@st.composite
def size_strings(draw: st.DrawFn) -> tuple[str, int]:
    """A size string in any accepted spelling, with the bytes it means."""
    number = draw(st.integers(min_value=0, max_value=10**6))
    unit = draw(units)
    spelled = draw(st.sampled_from([unit, unit.lower(), unit.upper()])) if unit else ""
    space = draw(st.sampled_from(["", " ", "  "]))
    pad = draw(st.sampled_from(["", " ", "\t"]))
    return f"{pad}{number}{space}{spelled}{pad}", number * UNITS[unit]
