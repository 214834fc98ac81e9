"""A minimal encoder of pprof's ``profile.proto`` (gzipped), the format ``go tool pprof`` reads.

Only what a heap profile needs is written: sample types, samples (location ids
innermost first, values, labels), locations with one line each, functions and
the string table. Protocol buffers' wire format is small enough to write by hand
(varints and length-delimited fields), which keeps the ``protobuf`` package out
of memwarden's dependencies.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["PprofBuilder", "PprofSample"]

_VARINT = 0
_LEN = 2


def _varint(value: int) -> bytes:
    """Encode ``value`` as a base-128 varint (negative int64 as two's complement)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


def _int_field(number: int, value: int) -> bytes:
    # proto3 omits zero scalars; readers take the default.
    return _key(number, _VARINT) + _varint(value) if value else b""


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _key(number, _LEN) + _varint(len(payload)) + payload


def _packed(number: int, values: Iterable[int]) -> bytes:
    payload = b"".join(_varint(v) for v in values)
    return _bytes_field(number, payload) if payload else b""


@dataclass(frozen=True)
class PprofSample:
    """One sample: its stack (innermost first) as (function, filename, line) and its values.

    ``labels`` are string labels, ``num_labels`` numeric ones (a thread id).
    """

    stack: Sequence[tuple[str, str, int]]
    values: Sequence[int]
    labels: Sequence[tuple[str, str]] = ()
    num_labels: Sequence[tuple[str, int]] = ()


@dataclass
class PprofBuilder:
    """Collects samples and encodes them as one gzipped ``profile.proto``.

    Args:
        sample_types: (type, unit) per value of every sample, e.g.
            ``[("inuse_samples", "count"), ("inuse_space", "bytes")]``.
        period_type: (type, unit) of the sampling period.
        period: the mean sampling interval in ``period_type`` units.
    """

    sample_types: Sequence[tuple[str, str]]
    period_type: tuple[str, str] = ("space", "bytes")
    period: int = 0
    time_nanos: int = 0
    _strings: dict[str, int] = field(default_factory=lambda: {"": 0})
    _functions: dict[tuple[str, str], int] = field(default_factory=dict)
    _locations: dict[tuple[int, int], int] = field(default_factory=dict)
    _samples: list[bytes] = field(default_factory=list)

    def _str(self, text: str) -> int:
        index = self._strings.get(text)
        if index is None:
            index = self._strings[text] = len(self._strings)
        return index

    def _location(self, function: str, filename: str, line: int) -> int:
        fid = self._functions.get((function, filename))
        if fid is None:
            fid = self._functions[(function, filename)] = len(self._functions) + 1
        lid = self._locations.get((fid, line))
        if lid is None:
            lid = self._locations[(fid, line)] = len(self._locations) + 1
        return lid

    def add(self, sample: PprofSample) -> None:
        """Add one sample."""
        if len(sample.values) != len(self.sample_types):
            raise ValueError(
                f"a sample has {len(sample.values)} values for {len(self.sample_types)} types"
            )
        body = _packed(1, [self._location(*frame) for frame in sample.stack])
        body += _packed(2, sample.values)
        for key, value in sample.labels:
            body += _bytes_field(3, _int_field(1, self._str(key)) + _int_field(2, self._str(value)))
        for key, num in sample.num_labels:
            body += _bytes_field(3, _int_field(1, self._str(key)) + _int_field(3, num))
        self._samples.append(body)

    def encode(self) -> bytes:
        """The gzipped ``profile.proto`` bytes."""
        out = bytearray()
        types = [(self._str(t), self._str(u)) for t, u in self.sample_types]
        period_type = (self._str(self.period_type[0]), self._str(self.period_type[1]))
        for t, u in types:
            out += _bytes_field(1, _int_field(1, t) + _int_field(2, u))
        for body in self._samples:
            out += _bytes_field(2, body)
        for (fid, line), lid in self._locations.items():
            line_msg = _int_field(1, fid) + _int_field(2, line)
            out += _bytes_field(4, _int_field(1, lid) + _bytes_field(4, line_msg))
        for (function, filename), fid in self._functions.items():
            # No system_name: pprof would "demangle" it and blank names like <module>.
            out += _bytes_field(
                5,
                _int_field(1, fid)
                + _int_field(2, self._str(function))
                + _int_field(4, self._str(filename)),
            )
        for text in self._strings:  # dicts keep insertion order: index order
            out += _bytes_field(6, text.encode("utf-8", "surrogateescape"))
        out += _int_field(9, self.time_nanos)
        out += _bytes_field(11, _int_field(1, period_type[0]) + _int_field(2, period_type[1]))
        out += _int_field(12, self.period)
        out += _int_field(14, types[-1][0] if types else 0)
        return gzip.compress(bytes(out), mtime=0)
