"""Register codec in every word/byte order, and the block planner."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from regimages import f32, f64, i16, i32, swap_bytes, swap_words, text, u32

from drivers.codec import CodecError, decode, decode_raw, encode
from drivers.plan import Slot, plan_blocks
from drivers.profile import Point

ORDERS = [("big", "big"), ("little", "big"), ("big", "little"), ("little", "little")]


def arrange(regs: list[int], word_order: str, byte_order: str) -> list[int]:
    """What a device with that layout puts on the wire (independent of drivers.codec)."""
    out = swap_words(regs) if word_order == "little" else regs
    return swap_bytes(out) if byte_order == "little" else out


@pytest.mark.parametrize(("word_order", "byte_order"), ORDERS)
@pytest.mark.parametrize(("ptype", "value", "pack"), [
    ("float32", -1234.5, f32), ("int32", -123456789, i32), ("uint32", 4_000_000_000, u32),
    ("float64", 98765.4321, f64),
])
def test_multi_register_orders(word_order: str, byte_order: str, ptype: str, value: float, pack) -> None:  # type: ignore[no-untyped-def]
    length = 4 if ptype == "float64" else 2
    p = Point("x", 0, type=ptype, length=length, word_order=word_order, byte_order=byte_order)
    wire = arrange(pack(value), word_order, byte_order)
    assert decode(p, wire) == pytest.approx(value)
    assert encode(p, value) == wire


def test_known_float_patterns() -> None:
    big = Point("x", 0, type="float32", length=2)
    assert decode(big, [0x3F80, 0x0000]) == 1.0
    assert decode(replace(big, word_order="little"), [0x0000, 0x3F80]) == 1.0
    assert decode(replace(big, byte_order="little"), [0x803F, 0x0000]) == 1.0
    assert decode(replace(big, word_order="little", byte_order="little"), [0x0000, 0x803F]) == 1.0


def test_int16_scale_offset_and_byte_swap() -> None:
    p = Point("t", 0, type="int16", scale=0.1, offset=-40.0)
    assert decode(p, i16(-25)) == pytest.approx(-42.5)
    assert decode(replace(p, byte_order="little"), swap_bytes(i16(-25))) == pytest.approx(-42.5)
    assert encode(p, -42.5) == i16(-25)


def test_sunspec_scale_factor() -> None:
    p = Point("w", 0, type="int16", unit="W")
    assert decode(p, i16(12345), sf=-2) == pytest.approx(123.45)
    assert decode(p, i16(-500), sf=1) == pytest.approx(-5000.0)
    assert encode(p, 123.45, sf=-2) == i16(12345)


def test_string_and_enum() -> None:
    p = Point("state", 0, type="string", length=5, enum=(("B1", "B"), ("C2", "C")))
    assert decode(p, text("C2", 5)) == "C"
    assert decode_raw(p, text("B1", 5)) == "B1"
    with pytest.raises(CodecError, match="not in enum"):
        decode(p, text("Z9", 5))
    num = Point("state", 0, type="uint16", enum=(("0", "A"), ("2", "C")))
    assert decode(num, [2]) == "C"
    assert encode(num, "C") == [2]
    with pytest.raises(CodecError):
        decode(num, [7])


def test_nan_and_bad_lengths_rejected() -> None:
    p = Point("x", 0, type="float32", length=2)
    with pytest.raises(CodecError, match="finite"):
        decode(p, [0x7FC0, 0x0000])
    with pytest.raises(CodecError, match="expected 2 registers"):
        decode(p, [1])
    with pytest.raises(CodecError, match="out of range"):
        encode(Point("y", 0, type="uint16"), 70000)
    with pytest.raises(CodecError):
        encode(p, math.nan)


@given(st.integers(-(2**31), 2**31 - 1), st.sampled_from(ORDERS))
def test_int32_roundtrip(value: int, order: tuple[str, str]) -> None:
    p = Point("x", 0, type="int32", length=2, word_order=order[0], byte_order=order[1])
    assert decode(p, encode(p, value)) == value


@given(st.floats(allow_nan=False, allow_infinity=False, width=32), st.sampled_from(ORDERS))
def test_float32_roundtrip(value: float, order: tuple[str, str]) -> None:
    p = Point("x", 0, type="float32", length=2, word_order=order[0], byte_order=order[1])
    assert decode(p, encode(p, value)) == value


def test_plan_bridges_small_gaps_and_splits_large_ones() -> None:
    slots = [Slot("a", 1, "holding", 0, 2), Slot("b", 1, "holding", 4, 2),  # gap 2: bridged
             Slot("c", 1, "holding", 20, 1),  # gap 14: new block
             Slot("d", 1, "input", 0, 2),  # other table
             Slot("e", 2, "holding", 0, 1)]  # other unit
    blocks = plan_blocks(slots, max_block=120, max_gap=4)
    assert [(b.unit_id, b.table, b.start, b.count) for b in blocks] == [
        (1, "holding", 0, 6), (1, "holding", 20, 1), (1, "input", 0, 2), (2, "holding", 0, 1)]
    assert [s.key for s in blocks[0].slots] == ["a", "b"]
    assert blocks[0].registers_of(slots[1], [0, 1, 2, 3, 40, 41]) == [40, 41]


def test_plan_respects_max_block() -> None:
    slots = [Slot(i, 1, "holding", 2 * i, 2) for i in range(100)]  # 200 contiguous registers
    blocks = plan_blocks(slots, max_block=120, max_gap=4)
    assert [b.count for b in blocks] == [120, 80]
    assert sum(len(b.slots) for b in blocks) == 100
