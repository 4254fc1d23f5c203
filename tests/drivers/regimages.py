"""Register images for the driver tests, built with `struct` rather than drivers.codec,
so a codec bug cannot cancel itself out."""

from __future__ import annotations

import struct


def f32(value: float) -> list[int]:
    """IEEE-754 float32, high word first, big-endian bytes (the Modbus convention)."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


def f64(value: float) -> list[int]:
    return list(struct.unpack(">HHHH", struct.pack(">d", value)))


def i32(value: int) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">i", value)))


def u32(value: int) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">I", value)))


def i16(value: int) -> list[int]:
    return [value & 0xFFFF]


def swap_words(regs: list[int]) -> list[int]:
    return list(reversed(regs))


def swap_bytes(regs: list[int]) -> list[int]:
    return [((r & 0xFF) << 8) | (r >> 8) for r in regs]


def text(s: str, length: int) -> list[int]:
    data = s.encode("ascii").ljust(2 * length, b"\x00")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
