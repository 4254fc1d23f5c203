"""Bulk decoding (drivers.bulk: one struct unpack per block layer) equals the per-point codec
(drivers.codec.decode_raw and the SunSpec "not implemented" check) on every shipped profile's
read plan and on synthetic points of every type, word order, byte order and bit field, for
random register contents and the values that mark "not implemented" (0, 0xFFFF, 0x8000,
NaN)."""

from __future__ import annotations

import math
import random
from itertools import product

import pytest

from drivers.bulk import BlockDecoder
from drivers.codec import CodecError, decode_raw, sunspec_not_implemented
from drivers.plan import Block, Slot, plan_blocks
from drivers.profile import PROFILES_DIR, TYPE_LENGTH, Point, load_profile

FILLS = (0x0000, 0xFFFF, 0x8000, 0x7FC0, 0x7FFF)  # constant images: the NA markers, NaN's high word


def _reference(block: Block, points: dict, regs: list[int]) -> tuple[dict, set, set]:
    raw, na, errors = {}, set(), set()
    for slot in block.slots:
        part = block.registers_of(slot, regs)
        try:
            raw[slot.key] = decode_raw(points[slot.key], part)
        except CodecError:
            errors.add(slot.key)
            continue
        if sunspec_not_implemented(points[slot.key], part):
            na.add(slot.key)
    return raw, na, errors


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _images(count: int, rng: random.Random, n: int) -> list[list[int]]:
    images = [[fill] * count for fill in FILLS]
    images += [[rng.randrange(0x10000) for _ in range(count)] for _ in range(n)]
    # A float32 NaN / not-implemented marker at every alignment.
    images += [[0x7FC0 if i % 2 == k else 0 for i in range(count)] for k in (0, 1)]
    return images


def _assert_equal(block: Block, points: dict, rng: random.Random, n: int = 40) -> None:
    decoder = BlockDecoder(block, points, check_na=points)
    for regs in _images(block.count, rng, n):
        raw, na, errors = {}, set(), {}
        decoder.decode(regs, raw, na, errors)
        ref_raw, ref_na, ref_errors = _reference(block, points, regs)
        assert set(errors) == ref_errors
        assert raw.keys() == ref_raw.keys()
        for key, value in ref_raw.items():
            assert _same(raw[key], value), (key, points[key], regs, raw[key], value)
        assert na == ref_na, (na ^ ref_na, regs)


def _profile_blocks(name: str) -> tuple[list[Block], dict]:
    """The profile's read plan as ModbusDevice lays it out (SunSpec points at their offset
    inside the model: the layout within a block is what the decoder compiles)."""
    profile = load_profile(name)
    connectors = max(profile.connectors, 2)
    points, slots = {}, []
    for p in profile.points:
        if not p.readable:
            continue
        for idx in range(1, connectors + 1) if p.per_connector else (None,):
            key = (p.name, idx) if idx else p.name
            addr = p.address + ((idx or 1) - 1) * profile.connector_stride
            unit = 1 + ((idx or 1) - 1) * profile.connector_id_stride
            points[key] = p
            slots.append(Slot(key, p.device_id or unit, p.table, addr, p.length))
    return plan_blocks(slots, profile.max_block, profile.max_gap), points


PROFILES = sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def test_every_shipped_profile_is_covered() -> None:
    assert len(PROFILES) >= 10


@pytest.mark.parametrize("name", PROFILES)
def test_bulk_equals_per_point_on_shipped_profile(name: str) -> None:
    blocks, points = _profile_blocks(name)
    assert blocks, name
    rng = random.Random(name)
    for block in blocks:
        _assert_equal(block, points, rng)


def _synthetic() -> list[Point]:
    """Every codec type in every order, bit fields, strings, and points overlapping others."""
    out: list[Point] = []
    addr = 0
    for ptype, word, byte in product(TYPE_LENGTH, ("big", "little"), ("big", "little")):
        length = TYPE_LENGTH[ptype]
        out.append(Point(f"{ptype}-{word}-{byte}", addr, type=ptype, length=length,
                         word_order=word, byte_order=byte))  # fmt: skip
        if not ptype.startswith("float"):
            bits = 16 * length
            out.append(Point(f"{ptype}-{word}-{byte}-field", addr, type=ptype, length=length,
                             word_order=word, byte_order=byte, mask=((1 << bits) - 1) >> 3,
                             shift=2))  # fmt: skip
        addr += length + (addr % 3)  # some gaps
    for byte in ("big", "little"):
        out.append(Point(f"string-{byte}", addr, type="string", length=5, byte_order=byte))
        addr += 5
    for stype, ptype in (("acc32", "uint32"), ("enum16", "uint16"), ("sunssf", "int16"),
                         ("ipv6addr", "string"), ("eui48", "string"), ("pad", "int16"),
                         ("float32", "float32"), ("bitfield32", "uint32")):  # fmt: skip
        length = 8 if stype == "ipv6addr" else 3 if stype == "eui48" else TYPE_LENGTH.get(ptype, 1)
        out.append(Point(f"ss-{stype}", addr, type=ptype, length=length, sunspec_type=stype))
        addr += length
    return out


def test_bulk_equals_per_point_on_every_type_and_order() -> None:
    points = {p.name: p for p in _synthetic()}
    slots = [Slot(p.name, 1, "holding", p.address, p.length) for p in points.values()]
    rng = random.Random(11)
    blocks = plan_blocks(slots, max_block=125, max_gap=4)
    assert sum(len(b.slots) for b in blocks) == len(points)
    for block in blocks:
        _assert_equal(block, points, rng, n=300)


def test_random_layouts() -> None:
    """Random points packed into one block, overlapping or not, random orders and fields."""
    rng = random.Random(2026)
    for _ in range(60):
        points = {}
        for i in range(rng.randrange(1, 25)):
            ptype = rng.choice([*TYPE_LENGTH, "string"])
            length = TYPE_LENGTH.get(ptype) or rng.randrange(1, 6)
            mask = shift = None
            if ptype in TYPE_LENGTH and not ptype.startswith("float") and rng.random() < 0.3:
                bits = 16 * length
                shift = rng.randrange(bits)
                mask = rng.randrange(1, 1 << bits)
            points[f"p{i}"] = Point(
                f"p{i}", rng.randrange(0, 40), type=ptype, length=length,
                word_order=rng.choice(("big", "little")), byte_order=rng.choice(("big", "little")),
                mask=mask, shift=shift or 0,
            )  # fmt: skip
        slots = [Slot(k, 1, "holding", p.address, p.length) for k, p in points.items()]
        for block in plan_blocks(slots, max_block=125, max_gap=50):
            _assert_equal(block, points, rng, n=10)


def test_short_answer_decodes_what_it_holds_point_by_point() -> None:
    a = Point("a", 0, type="uint16")
    b = Point("b", 1, type="uint32", length=2)
    points = {"a": a, "b": b}
    block = plan_blocks([Slot("a", 1, "holding", 0, 1), Slot("b", 1, "holding", 1, 2)])[0]
    raw: dict = {}
    errors: dict = {}
    BlockDecoder(block, points).decode([7, 1], raw, set(), errors)
    assert raw == {"a": 7}
    assert "b" in errors and "expected 2 registers" in errors["b"]
