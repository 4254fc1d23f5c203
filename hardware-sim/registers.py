"""Register encoding per profile, and one device's register image.

pymodbus has no byte swap inside a register and its datastores are being reworked (3.16),
so the simulator keeps its own small image: plain lists of 16-bit words per table,
written from engineering values with the profile's type, scale, word and byte order.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from .profile import SimPoint, SimProfile

_STRUCT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "int64": ">q",
           "uint64": ">Q", "float32": ">f", "float64": ">d"}
_INT_RANGE = {"int16": (-(1 << 15), (1 << 15) - 1), "uint16": (0, (1 << 16) - 1),
              "int32": (-(1 << 31), (1 << 31) - 1), "uint32": (0, (1 << 32) - 1),
              "int64": (-(1 << 63), (1 << 63) - 1), "uint64": (0, (1 << 64) - 1)}


def _order_words(words: list[int], point: SimPoint) -> list[int]:
    """Big-endian words (high first, bytes big) -> the point's wire order; an involution."""
    if point.word_order == "little":
        words = words[::-1]
    if point.byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words


def encode(point: SimPoint, value: float | str, current: list[int] | None = None) -> list[int]:
    """Engineering value (or enum meaning) -> the point's registers, as on the wire. A bit
    field is merged into `current` (the registers it shares with other bits)."""
    if point.mask is not None:
        raw_field = _enum_raw(point, value) if isinstance(value, str) else round(
            (value - point.offset) / point.scale)
        words = _order_words(list(current or [0] * point.length), point)
        whole = int.from_bytes(b"".join(w.to_bytes(2, "big") for w in words), "big")
        whole = (whole & ~point.mask) | ((raw_field << point.shift) & point.mask)
        data = whole.to_bytes(2 * point.length, "big")
        return _order_words([int.from_bytes(data[i : i + 2], "big")
                             for i in range(0, len(data), 2)], point)
    if point.type == "string":
        if point.enum and isinstance(value, str):
            # a text state mapped by the profile (Alfen "C2" -> C): serve the last code
            # with that meaning (C2: charging, B2: ready)
            codes = [k for k, v in point.enum.items() if v == value]
            value = codes[-1] if codes else value
        raw_bytes = str(value).encode("ascii", "replace")[: point.length * 2]
        raw_bytes = raw_bytes.ljust(point.length * 2, b"\0")
        words = [int.from_bytes(raw_bytes[i : i + 2], "big") for i in range(0, len(raw_bytes), 2)]
        return _order_words(words, point)
    if isinstance(value, str):
        raw: float = _enum_raw(point, value)
    else:
        raw = (value - point.offset) / point.scale
    if point.type in _INT_RANGE:
        low, high = _INT_RANGE[point.type]
        # A real device saturates rather than wrapping round; NaN reads as 0.
        raw = 0 if math.isnan(raw) else min(high, max(low, round(raw)))
        data = struct.pack(_STRUCT[point.type], int(raw))
    else:
        data = struct.pack(_STRUCT[point.type], raw)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return _order_words(words, point)


def decode(point: SimPoint, words: list[int]) -> float | str:
    """The point's registers as on the wire -> engineering value (enum meaning if mapped)."""
    words = _order_words(list(words), point)
    data = b"".join(w.to_bytes(2, "big") for w in words)
    if point.type == "string":
        return data.rstrip(b"\0").decode("ascii", "replace")
    raw = struct.unpack(_STRUCT[point.type], data)[0]
    if point.mask is not None:
        raw = (int.from_bytes(data, "big") & point.mask) >> point.shift
    if point.enum and str(raw) in point.enum:
        return point.enum[str(raw)]
    return raw * point.scale + point.offset


def _enum_raw(point: SimPoint, meaning: str) -> int:
    for key, value in point.enum.items():
        if value == meaning:
            return int(key)
    raise ValueError(f"{point.name}: {meaning!r} is not in the profile's enum")


@dataclass(frozen=True)
class Slot:
    """One point instance in the image (per-connector points have one slot per connector)."""

    point: SimPoint
    idx: int  # connector (1-based), 0 for device-level points
    unit: int  # the Modbus unit id it answers on
    address: int


class RegisterImage:
    """The words a device serves: holding and input tables per unit id, sized to the
    profile's span on that unit (Alfen: sockets on 1, 2, the station block on 200).

    Addresses inside a span but not mapped read as 0 (drivers bridge small gaps); reads
    beyond it and writes to anything not writable are refused (Modbus 'illegal address').
    """

    def __init__(self, profile: SimProfile, connectors: int = 1, unit: int = 1) -> None:
        self.profile = profile
        self.slots: dict[tuple[str, int], Slot] = {}
        for point in profile.points.values():
            for idx in range(1, connectors + 1) if point.per_connector else (0,):
                address = point.address_for(idx, profile.connector_stride)
                on = point.device_id if point.device_id is not None else (
                    unit + (idx - 1) * profile.connector_id_stride if idx else unit)
                self.slots[(point.name, idx)] = Slot(point, idx, on, address)
        self.units = sorted({s.unit for s in self.slots.values()} | {unit})
        self.tables: dict[tuple[int, str], list[int]] = {}
        for u in self.units:
            for table in ("holding", "input"):
                ends = [s.address + s.point.length for s in self.slots.values()
                        if s.point.table == table and s.unit == u]
                self.tables[(u, table)] = [0] * (max(ends) if ends else 0)
        # (unit, holding address) -> slots, for every register of a writable point
        self._writable: dict[tuple[int, int], list[Slot]] = {}
        for slot in self.slots.values():
            if slot.point.writable and slot.point.table == "holding":
                for a in range(slot.address, slot.address + slot.point.length):
                    self._writable.setdefault((slot.unit, a), []).append(slot)

    def has(self, name: str, idx: int = 0) -> bool:
        return (name, idx) in self.slots

    def _words(self, slot: Slot) -> tuple[list[int], slice]:
        return self.tables[(slot.unit, slot.point.table)], slice(
            slot.address, slot.address + slot.point.length)

    def set(self, name: str, value: float | str, idx: int = 0) -> None:
        slot = self.slots[(name, idx)]
        table, span = self._words(slot)
        table[span] = encode(slot.point, value, table[span])

    def get(self, name: str, idx: int = 0) -> float | str:
        slot = self.slots[(name, idx)]
        table, span = self._words(slot)
        return decode(slot.point, table[span])

    def read(self, unit: int, table: str, address: int, count: int) -> list[int] | None:
        words = self.tables.get((unit, table))
        if words is None or address < 0 or count < 1 or address + count > len(words):
            return None
        return words[address : address + count]

    def write(self, unit: int, address: int,
              values: list[int]) -> list[tuple[Slot, float | str]] | None:
        """Store holding registers; returns the written points with their decoded values,
        or None (nothing stored) if any register is not writable."""
        span = range(address, address + len(values))
        if not values or any((unit, a) not in self._writable for a in span):
            return None
        words = self.tables[(unit, "holding")]
        words[address : address + len(values)] = [v & 0xFFFF for v in values]
        touched = {(s.point.name, s.idx): s for a in span for s in self._writable[(unit, a)]}
        return [(s, self.get(s.point.name, s.idx)) for s in
                sorted(touched.values(), key=lambda s: s.address)]
