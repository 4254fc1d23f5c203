"""Decode every point of one block read at once: a decoder compiled per block at prepare time.

Decoding point by point (drivers.codec.decode_raw: join the words, swap, unpack) costs a few
microseconds each, and a depot reads thousands of points per cycle. A block's registers are
packed into bytes once (twice when some point swaps the bytes inside its registers), and one
precompiled `struct` format per layer (points that do not overlap, gaps skipped with pad
bytes) unpacks every point of that layer in a single call.

Word and byte order without reordering bytes: with the block packed big-endian (B) and
byte-swapped (S), a point's value is B read big-endian (word big, byte big), B read
little-endian (word little, byte little), S read little-endian (word little, byte big) or S
read big-endian (word big, byte little). Bit fields unpack unsigned then mask and shift, as
the codec does. The SunSpec "not implemented" marker is compared on the raw value where
that value is the one SunSpec reads (big-endian, no bit field, same format); any other point
is decoded by the per-point codec, so the result is always the codec's
(tests/drivers/test_bulk_decode.py checks this on every shipped profile).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from drivers.codec import FORMATS, CodecError, decode_raw, sunspec_not_implemented
from drivers.plan import Block
from drivers.profile import Point
from drivers.sunspec_models import SUNSPEC_TYPES

Key = Hashable
Raw = int | float | str

_UNSIGNED = {2: "H", 4: "I", 8: "Q"}  # bit fields: the field's bits of the unsigned value


@dataclass(frozen=True, slots=True)
class _Member:
    key: Key
    first: int  # register offset inside the block
    point: Point
    code: str  # struct code: "H", "i", "8s", ...
    swapped: bool  # read from the byte-swapped copy of the block
    endian: str  # ">" or "<"
    na: int | float | str | None  # the raw "not implemented" marker; None: no fast check


@dataclass(frozen=True, slots=True)
class _Layer:
    """Non-overlapping points read with one format from one copy of the block."""

    fmt: struct.Struct
    offset: int  # bytes
    swapped: bool
    keys: tuple[Key, ...]
    strings: tuple[int, ...]  # positions of string values (bytes -> text)
    fields: tuple[tuple[int, int, int], ...]  # (position, mask, shift) of bit fields


class BlockDecoder:
    """Raw values (before scale) of a block's points from the block's registers, plus which of
    the keys in `check_na` hold SunSpec's "not implemented" marker."""

    def __init__(self, block: Block, points: dict[Key, Point], check_na: Iterable[Key] = ()) -> None:
        self.block = block
        self._check = frozenset(check_na)
        self._points = {slot.key: points[slot.key] for slot in block.slots}
        self._big = struct.Struct(f">{block.count}H")
        members: list[_Member] = []
        slow: list[tuple[Key, int, Point]] = []
        for slot in block.slots:
            point = points[slot.key]
            m = _member(slot.key, slot.address - block.start, point)
            if m is None:
                slow.append((slot.key, slot.address - block.start, point))
            else:
                members.append(m)
        self._slow = tuple(slow)
        self._layers = tuple(_layers(members))
        self._swap = struct.Struct(f"<{block.count}H") if any(
            layer.swapped for layer in self._layers) else None
        # Fast not-implemented checks: (key, marker, is_nan_marker); the rest per point.
        self._na_fast = tuple(
            (m.key, m.na, isinstance(m.na, float) and math.isnan(m.na))
            for m in members if m.key in self._check and m.na is not None)
        self._na_slow = tuple(
            (m.key, m.first, m.point) for m in members if m.key in self._check and m.na is None)

    def decode(self, regs: Sequence[int], raw: dict[Key, Raw], na: set[Key],
               errors: dict[Key, str]) -> None:
        """Fill `raw` (key -> raw value), `na` (keys not implemented) and `errors` (key -> why
        the codec refused it) from the registers of the whole block."""
        if len(regs) != self.block.count:
            self._per_point(regs, raw, na, errors)  # a short answer: what it holds, per point
            return
        big = self._big.pack(*regs)
        swap = self._swap.pack(*regs) if self._swap is not None else b""
        for layer in self._layers:
            values: Sequence[Any] = layer.fmt.unpack_from(swap if layer.swapped else big, layer.offset)
            if layer.strings or layer.fields:
                fixed = list(values)
                for i in layer.strings:
                    fixed[i] = fixed[i].split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()
                for i, mask, shift in layer.fields:
                    fixed[i] = (fixed[i] & mask) >> shift
                values = fixed
            raw.update(zip(layer.keys, values, strict=True))
        for key, first, point in self._slow:
            try:
                raw[key] = decode_raw(point, regs[first : first + point.length])
            except (CodecError, struct.error) as exc:
                errors[key] = str(exc)
        for key, marker, nan_marker in self._na_fast:
            value = raw[key]
            if value == marker or nan_marker and isinstance(value, float) and math.isnan(value):
                na.add(key)
        for key, first, point in self._na_slow:
            if sunspec_not_implemented(point, regs[first : first + point.length]):
                na.add(key)

    def _per_point(self, regs: Sequence[int], raw: dict[Key, Raw], na: set[Key],
                   errors: dict[Key, str]) -> None:
        """The codec point by point (the reference the compiled layers must equal)."""
        for slot in self.block.slots:
            point = self._points[slot.key]
            part = self.block.registers_of(slot, list(regs))
            try:
                raw[slot.key] = decode_raw(point, part)
                if slot.key in self._check and sunspec_not_implemented(point, part):
                    na.add(slot.key)
            except (CodecError, struct.error) as exc:
                errors[slot.key] = str(exc)


def _member(key: Key, first: int, point: Point) -> _Member | None:
    """How to read the point from the packed block, or None: leave it to the codec."""
    if point.type == "string":
        code = f"{2 * point.length}s"
        swapped, endian = point.byte_order == "little", ">"
    else:
        fmt = FORMATS.get(point.type)
        if fmt is None or struct.calcsize(fmt) != 2 * point.length:
            return None  # the codec raises its error for this point
        size = struct.calcsize(fmt)
        code = _UNSIGNED[size] if point.mask is not None else fmt[1]
        swapped = point.word_order != point.byte_order
        endian = "<" if point.word_order == "little" else ">"
    return _Member(key, first, point, code, swapped, endian, _na_marker(point))


def _na_marker(point: Point) -> int | float | str | None:
    """The raw value meaning "not implemented" when SunSpec reads this point's registers the
    way the fast path does; None when it does not (orders, bit fields, other formats)."""
    stype = point.sunspec_type or point.type
    if point.mask is not None or point.word_order != "big" or point.byte_order != "big":
        return None
    if point.type == "string":
        return "" if stype == "string" else None  # ipv6addr/eui48/...: the codec's check
    spec = SUNSPEC_TYPES.get(stype)
    if spec is None or spec[1] != FORMATS.get(point.type) or spec[2] is None:
        return None
    return spec[2]


def _layers(members: list[_Member]) -> Iterable[_Layer]:
    """Group by (copy, endianness), then stack overlapping points (bit fields sharing a
    register) into further layers; one struct format per layer."""
    groups: dict[tuple[bool, str], list[_Member]] = {}
    for m in members:
        groups.setdefault((m.swapped, m.endian), []).append(m)
    for (swapped, endian), group in sorted(groups.items()):
        stacks: list[list[_Member]] = []
        for m in sorted(group, key=lambda m: m.first):
            for stack in stacks:
                last = stack[-1]
                if last.first + last.point.length <= m.first:
                    stack.append(m)
                    break
            else:
                stacks.append([m])
        for stack in stacks:
            yield _layer(stack, swapped, endian)


def _layer(stack: list[_Member], swapped: bool, endian: str) -> _Layer:
    parts, at = [endian], stack[0].first
    strings, fields = [], []
    for i, m in enumerate(stack):
        if m.first > at:
            parts.append(f"{2 * (m.first - at)}x")
        parts.append(m.code)
        at = m.first + m.point.length
        if m.code.endswith("s"):
            strings.append(i)
        elif m.point.mask is not None:
            fields.append((i, m.point.mask, m.point.shift))
    return _Layer(struct.Struct("".join(parts)), 2 * stack[0].first, swapped,
                  tuple(m.key for m in stack), tuple(strings), tuple(fields))
