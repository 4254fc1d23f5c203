"""Profile format: bit fields (mask, shift, byte) on read points and function 6 writes,
checked on a real pymodbus server against registers laid out by hand."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from modbus_regserver import RegisterServer, Unit

import drivers

PROFILE = """
[device]
name = "bit fields"
kind = "charger"

[[point]]
name = "state"
per_connector = true
address = 100
type = "uint32"
mask = 0x00FF0000
shift = 16
enum = { "0" = "A", "1" = "B", "2" = "C" }

[[point]]
name = "flags_high"
address = 102
byte = "high"

[[point]]
name = "flags_low"
address = 102
byte = "low"

[[point]]
name = "bit3"
address = 103
type = "int16"
mask = 0x0008
shift = 3

[[point]]
name = "power_limit"
per_connector = true
address = 200
type = "uint16"
unit = "A"
scale = 0.001
access = "rw"
write_function = 6
"""


@pytest.fixture
def profile(tmp_path: Path) -> drivers.Profile:
    path = tmp_path / "bits.toml"
    path.write_text(PROFILE)
    return drivers.load_profile(path)


def test_bit_fields_and_single_register_writes(profile: drivers.Profile) -> None:
    unit = Unit()
    unit.set("holding", 100, [0x1202, 0xBEEF])  # state byte = 0x02 (C), other bytes noise
    unit.set("holding", 102, [0xA55A])
    unit.set("holding", 103, [0xFFF8])  # negative as int16, bit 3 set

    async def main() -> None:
        async with RegisterServer({1: unit}) as srv:
            dev = drivers.make_device("charger", srv.endpoint, 1, profile, timeout_s=1.0)
            values = await dev.read_values()
            assert values[("state", 1)] == "C"
            assert (values["flags_high"], values["flags_low"]) == (0xA5, 0x5A)
            assert values["bit3"] == 1
            await dev.set_limit(1, 11.04)  # 16 A x 3 x 230 V -> 16000 mA
            assert unit.writes == [(200, [16000])] and unit.write_functions == [6]
            await dev.bus.close()
    asyncio.run(main())


@pytest.mark.parametrize(("point", "message"), [
    ("name='x'\naddress=0\ntype='float32'\nmask=1", "bit fields need an integer type"),
    ("name='x'\naddress=0\nbyte='middle'", "must be 'high' or 'low'"),
    ("name='x'\naddress=0\nmask=0x10000", "must be an integer 1..65535"),
    ("name='x'\naddress=0\nmask=1\naccess='rw'", "a bit field is read-only"),
    ("name='x'\naddress=0\ntype='uint32'\nwrite_function=6\naccess='rw'", "6 writes one register"),
    ("name='x'\naddress=0\nwrite_function=5", r"must be 6 \(single register\) or 16"),
])
def test_bad_bit_fields_name_the_point(tmp_path: Path, point: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[device]\nname='m'\nkind='meter'\n[[point]]\n{point}\n")
    with pytest.raises(drivers.ProfileError, match=message) as err:
        drivers.load_profile(path)
    assert "point 'x'" in str(err.value)
