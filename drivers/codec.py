"""Registers <-> values for one profile point.

pymodbus 3.16 has convert_from_registers/convert_to_registers with a word order, but no byte
swap inside a register, which some inverters and BMS ship; so the codec does its own packing
with `struct` (a few lines, one code path for every order combination).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from drivers.profile import Point
from drivers.sunspec_models import PointDef, raw_value

FORMATS = {
    "int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f", "float64": ">d",
    "int64": ">q", "uint64": ">Q",
}
_INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1),
}


class CodecError(ValueError):
    """Registers that cannot be decoded, or a value that cannot be encoded, for a point."""


def _to_bytes(point: Point, regs: Sequence[int]) -> bytes:
    words = list(regs)
    if point.word_order == "little" and point.type != "string":
        words.reverse()
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    if point.byte_order == "little":
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    return raw


def _from_bytes(point: Point, raw: bytes) -> list[int]:
    if point.byte_order == "little":
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if point.word_order == "little" and point.type != "string":
        words.reverse()
    return words


def decode_raw(point: Point, regs: Sequence[int]) -> int | float | str:
    """The raw device value (before scale), from exactly `point.length` registers."""
    if len(regs) != point.length:
        raise CodecError(f"{point.name}: expected {point.length} registers, got {len(regs)}")
    raw = _to_bytes(point, regs)
    if point.type == "string":
        return raw.split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()
    value = struct.unpack(FORMATS[point.type], raw)[0]
    if point.mask is not None:
        # the field's bits of the register as an unsigned number
        unsigned = int.from_bytes(raw, "big")
        value = (unsigned & point.mask) >> point.shift
    return value  # type: ignore[no-any-return]


def sunspec_not_implemented(point: Point, regs: Sequence[int]) -> bool:
    """The SunSpec "not implemented" marker of the point's SunSpec type (its codec type
    when the profile gives none): e.g. 0 for an acc32 energy counter, 0xFFFF for uint16."""
    sdef = PointDef(point.name, 0, point.sunspec_type or point.type, point.length, None, False, "", ())
    return raw_value(sdef, regs) is None


def decode(point: Point, regs: Sequence[int], sf: int | None = None) -> float | str:
    """Engineering value: enum meaning, string, or raw x scale x 10^sf + offset.

    Raises CodecError for values that cannot mean anything (NaN/inf, unknown enum code).
    """
    return engineering(point, decode_raw(point, regs), sf)


def engineering(point: Point, raw: int | float | str, sf: int | None = None) -> float | str:
    """decode() from the raw value (drivers.bulk decodes raw values a block at a time)."""
    if point.enum is not None:
        key = raw if isinstance(raw, str) else str(int(raw)) if float(raw).is_integer() else str(raw)
        for k, meaning in point.enum:
            if k == key:
                return meaning
        raise CodecError(f"{point.name}: value {raw!r} not in enum")
    if isinstance(raw, str):
        return raw
    value = float(raw)
    if not math.isfinite(value):
        raise CodecError(f"{point.name}: not a finite number ({value})")
    value *= point.scale
    if sf is not None:
        value *= 10.0**sf
    return value + point.offset


def encode(point: Point, value: float | str, sf: int | None = None) -> list[int]:
    """Registers to write for an engineering value (inverse of decode)."""
    if point.enum is not None and isinstance(value, str):
        for k, meaning in point.enum:
            if meaning == value:
                value = k if point.type == "string" else float(k)
                break
        else:
            raise CodecError(f"{point.name}: {value!r} not in enum")
    if point.type == "string":
        data = str(value).encode("ascii")
        if len(data) > 2 * point.length:
            raise CodecError(f"{point.name}: string longer than {2 * point.length} characters")
        return _from_bytes(point, data.ljust(2 * point.length, b"\x00"))
    if isinstance(value, str):
        raise CodecError(f"{point.name}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise CodecError(f"{point.name}: cannot write {value}")
    raw = (value - point.offset) / point.scale
    if sf is not None:
        raw /= 10.0**sf
    if point.type in _INT_RANGES:
        lo, hi = _INT_RANGES[point.type]
        iraw = round(raw)
        if not lo <= iraw <= hi:
            raise CodecError(f"{point.name}: {value} out of range for {point.type}")
        packed = struct.pack(FORMATS[point.type], iraw)
    else:
        packed = struct.pack(FORMATS[point.type], raw)
    return _from_bytes(point, packed)
