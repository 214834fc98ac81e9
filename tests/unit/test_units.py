"""parse_size / format_size: every documented spelling, round trips, and clear errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memwarden._units import format_size, parse_size
from memwarden.exceptions import ConfigurationError
from tests.strategies import size_strings, sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512 MiB", 512 * 2**20),
        ("2GB", 2 * 10**9),
        ("2gb", 2 * 10**9),
        ("2 gib", 2 * 2**30),
        ("300Mi", 300 * 2**20),
        ("1.5G", 1_500_000_000),
        ("1.5 GiB", 3 * 2**29),
        ("4096", 4096),
        ("  10 kb ", 10_000),
        ("1 TiB", 2**40),
        ("1 B", 1),
        ("7 bytes", 7),
        ("1e3", 1000),
        (".5 KiB", 512),
    ],
)
def test_parse_size_spellings(text: str, expected: int) -> None:
    """Decimal and binary units, Kubernetes short forms, case and whitespace all parse."""
    assert parse_size(text) == expected


def test_parse_size_passes_ints_and_floors_floats() -> None:
    """Bare ints are bytes; floats are floored to a whole byte."""
    assert parse_size(123) == 123
    assert parse_size(10.9) == 10


@pytest.mark.parametrize(
    "bad", ["", "   ", "-1", "-5 MiB", "abc", "12 XB", "1.2.3", "MiB", "nan", "inf", "5 MiBs"]
)
def test_parse_size_rejects_bad_strings(bad: str) -> None:
    """Empty, negative, NaN and unknown units raise ConfigurationError naming the value."""
    with pytest.raises(ConfigurationError) as info:
        parse_size(bad, source="environment")
    assert repr(bad) in str(info.value)
    assert "environment" in str(info.value)


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, -0.5, True, None, [1]])
def test_parse_size_rejects_bad_values(bad: object) -> None:
    """Negative, non-finite and non-size values are refused."""
    with pytest.raises(ConfigurationError):
        parse_size(bad)  # type: ignore[arg-type]


@given(size_strings())
def test_parse_size_matches_meaning(case: tuple[str, int]) -> None:
    """Every generated spelling parses to the bytes it means."""
    text, expected = case
    assert parse_size(text) == expected


@given(sizes, st.booleans())
def test_format_round_trips_within_display_precision(n: int, binary: bool) -> None:
    """parse_size(format_size(n)) is within the one-decimal rounding of n."""
    text = format_size(n, binary=binary)
    back = parse_size(text)
    if n < 1000:
        assert back == n
    else:
        # One decimal of the display unit: relative error below 5%.
        assert abs(back - n) <= 0.05 * n + 1


def test_format_size_examples() -> None:
    """Sizes display in the largest unit that keeps the number below the step."""
    assert format_size(0) == "0 B"
    assert format_size(1023) == "1023 B"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(3 * 2**30) == "3.0 GiB"
    assert format_size(2_500_000, binary=False) == "2.5 MB"
    assert format_size(-2048) == "-2.0 KiB"


@pytest.mark.parametrize(
    "text",
    ["1e999999", "1e400 GB", "1e5000", "9223372036854775808", "9.3e18", "8193 PiB", "1" * 64],
)
def test_sizes_above_the_bound_are_refused_at_once(text: str) -> None:
    """Sizes above 2**63 - 1 are refused naming the value (1e999999 no longer takes 43 s)."""
    with pytest.raises(ConfigurationError, match="too large") as info:
        parse_size(text, source="MEMWARDEN_MAX_MEMORY")
    assert text[:20] in str(info.value)
    assert "MEMWARDEN_MAX_MEMORY" in str(info.value)


@pytest.mark.parametrize("value", [2**63, 2**64, 10**400, 1e19, 1e300])
def test_numbers_above_the_bound_are_refused(value: int | float) -> None:
    """Ints and floats above the bound are refused; the message stays short."""
    with pytest.raises(ConfigurationError, match="too large") as info:
        parse_size(value)
    assert len(str(info.value)) < 200


def test_the_bound_itself_is_accepted() -> None:
    """2**63 - 1 bytes is the largest size; tiny exponents round down to zero quickly."""
    assert parse_size(str(2**63 - 1)) == 2**63 - 1
    assert parse_size("1e-999999") == 0


@pytest.mark.parametrize("text", ["١٠ MB", "１０ MiB", "10\u0663 KB", "²"])
def test_non_ascii_digits_are_refused(text: str) -> None:
    """Unicode digits other than ASCII 0-9 are refused with a message that says so."""
    with pytest.raises(ConfigurationError, match="ASCII digits"):
        parse_size(text)


def test_a_huge_string_is_refused_without_echoing_it() -> None:
    """A megabyte of digits is refused with a shortened value in the message."""
    with pytest.raises(ConfigurationError) as info:
        parse_size("9" * 1_000_000)
    assert len(str(info.value)) < 300
