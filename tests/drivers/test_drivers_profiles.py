"""Every shipped profile parses; broken profiles are refused with the file and point named."""

from __future__ import annotations

from pathlib import Path

import pytest

import drivers
from drivers.endpoint import EndpointError, parse_endpoint
from drivers.profile import PROFILES_DIR

SHIPPED = sorted(PROFILES_DIR.glob("*.toml"))


def test_profiles_exist() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"sim-meter", "sim-bms", "sim-inverter", "sim-charger", "eastron-sdm630",
            "alfen-ng9xx", "sunspec-meter", "sunspec-inverter", "sunspec-storage"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_profile_parses(path: Path) -> None:
    profile = drivers.load_profile(path)
    assert profile.kind in ("meter", "battery", "inverter", "charger")
    assert profile.points
    # by name too
    assert drivers.load_profile(path.stem).points == profile.points


def test_sim_profile_details() -> None:
    bms = drivers.load_profile("sim-bms")
    power = bms.point("power")
    assert power is not None and power.word_order == "little" and power.type == "int32"
    inv = drivers.load_profile("sim-inverter")
    pv = inv.point("pv_power")
    setpoint = inv.point("battery_setpoint")
    assert pv is not None and (pv.word_order, pv.byte_order) == ("little", "little")
    assert setpoint is not None and (setpoint.word_order, setpoint.byte_order) == ("big", "big")
    assert setpoint.writable
    charger = drivers.load_profile("sim-charger")
    assert charger.connectors == 2 and charger.connector_stride == 10


BAD = [
    ("[device]\nkind='meter'\n[[point]]\nname='x'\naddress=0\n", "[device] name: required"),
    ("[device]\nname='m'\nkind='toaster'\n[[point]]\nname='x'\naddress=0\n", "kind: 'toaster' is not one of"),
    ("[device]\nname='m'\nkind='meter'\n", "at least one point"),
    ("[device]\nname='m'\nkind='meter'\n[[point]]\nname='soc'\naddress=0\ntype='int128'\n",
     "point 'soc' type: 'int128' is not one of"),
    ("[device]\nname='m'\nkind='meter'\n[[point]]\nname='p'\naddress=-1\n", "point 'p' address: must be 0..65535"),
    ("[device]\nname='m'\nkind='meter'\n[[point]]\nname='p'\naddress=0\ntype='string'\n",
     "point 'p' length: required"),
    ("[device]\nname='m'\nkind='meter'\n[[point]]\nname='p'\naddress=0\ntype='float32'\nlength=1\n",
     "point 'p' length: float32 is 2 register(s)"),
    ("[device]\nname='m'\nkind='meter'\n[[point]]\nname='p'\naddress=0\nscale_register='nope'\n",
     "point 'p' scale_register: no point named 'nope'"),
    ("[device]\nname='m'\nkind='meter'\n[[point]]\nname='p'\naddress=0\n[[point]]\nname='p'\naddress=2\n",
     "point 'p': duplicate name"),
    ("[device]\nname='m'\nkind='meter'\n[[point]]\nname='p'\naddress=0\nadress=1\n",
     "point 'p': unknown key(s) ['adress']"),
    ("[device]\nname='m'\nkind='meter'\n[[point]]\nname='p'\naddress=0\nword_order='middle'\n",
     "point 'p' word_order"),
    ("[device]\nname='m'\nkind='meter'\n[[point]]\nname='p'\naddress=0\nmin=5\nmax=1\n",
     "point 'p' min: greater than max"),
    ("[device]\nname='m'\nkind='meter'\n[[point]]\nname='p'\naddress=0\nper_connector=true\n",
     "only chargers have connectors"),
    ("[device]\nname='m'\nkind='meter'\nsunspec=true\n[[point]]\nname='p'\naddress=0\n",
     "point 'p' model: required for sunspec profiles"),
    ("[device]\nname='m'\nkind='meter'\nmax_block=200\n[[point]]\nname='p'\naddress=0\n",
     "max_block: must be 1..125"),
    ("[device\nname='m'\n", "not valid TOML"),
    # the phase switch capability: a writable per-connector charge_phases and its pause
    ("[device]\nname='c'\nkind='charger'\n[[point]]\nname='charge_phases'\naddress=0\n"
     "per_connector=true\naccess='rw'\n", "phase_switch_pause_s: required with a writable"),
    ("[device]\nname='c'\nkind='charger'\nphase_switch_pause_s=3\n[[point]]\n"
     "name='charge_phases'\naddress=0\nper_connector=true\n", "needs a writable per-connector"),
    ("[device]\nname='c'\nkind='charger'\nphase_switch_pause_s=0\n[[point]]\n"
     "name='charge_phases'\naddress=0\nper_connector=true\naccess='rw'\n", "in (0, 600]"),
]


def test_phase_switch_capability_declared_by_alfen_and_the_sim_ac_map() -> None:
    alfen = drivers.load_profile("alfen-ng9xx")
    switch = alfen.point("charge_phases")
    assert switch is not None and switch.address == 1215 and switch.writable
    assert switch.write_function == 6 and alfen.phase_switch_pause_s == 5.0
    assert drivers.load_profile("sim-charger-ac").phase_switch_pause_s == 3.0
    assert drivers.load_profile("sim-charger").phase_switch_pause_s is None


@pytest.mark.parametrize(("body", "message"), BAD)
def test_bad_profiles_name_file_and_point(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(body)
    with pytest.raises(drivers.ProfileError) as err:
        drivers.load_profile(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_profile_by_name() -> None:
    with pytest.raises(drivers.ProfileError, match="no-such-device.toml: profile not found"):
        drivers.load_profile("no-such-device")


def test_endpoints() -> None:
    tcp = parse_endpoint("tcp://127.0.0.1:5020")
    assert (tcp.host, tcp.port, tcp.is_serial) == ("127.0.0.1", 5020, False)
    rtu = parse_endpoint("rtu:///dev/pts/3?baudrate=9600&parity=E&stopbits=1")
    assert (rtu.device, rtu.baudrate, rtu.parity, rtu.stopbits, rtu.is_serial) == ("/dev/pts/3", 9600, "E", 1, True)
    assert parse_endpoint(rtu.url) == rtu
    for bad, msg in [("udp://x:1", "scheme"), ("tcp://:502", "missing host"),
                     ("rtu:///dev/ttyS0?parity=X", "parity"), ("rtu:///dev/ttyS0?speed=1", "unknown option"),
                     ("tcp://127.0.0.1:99999", "port")]:
        with pytest.raises(EndpointError, match=msg):
            parse_endpoint(bad)


def test_make_device_checks_kind() -> None:
    with pytest.raises(ValueError, match="describes a meter, not a charger"):
        drivers.make_device("charger", "tcp://127.0.0.1:1", 1, "sim-meter")
    with pytest.raises(ValueError, match="kind: 'pump'"):
        drivers.make_device("pump", "tcp://127.0.0.1:1", 1, "sim-meter")
