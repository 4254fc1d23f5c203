"""SunSpec profiles on devices with only some models: float-only meters and inverters, a
battery offering only model 124, a device lacking every model its profile reads, and
battery setpoints through models 704 and 124. Images are built with pysunspec2 and served by
pymodbus's server; written registers are read back with pysunspec2."""

from __future__ import annotations

import asyncio
import struct

import pytest
import sunspec2.device as ss_device
from modbus_regserver import RegisterServer, Unit
from sunspec_images import build, device_image

import drivers


def _serve(*models):  # type: ignore[no-untyped-def]
    image = device_image(list(models))
    return RegisterServer({1: Unit(holding=image)}, span=(40000, 40000 + len(image)))


def _model_back(unit: Unit, model_id: int, models: list) -> ss_device.Model:  # type: ignore[type-arg]
    """The model as the server now holds it, decoded by pysunspec2."""
    addr = 40002
    for m in models:
        if m.model_id == model_id:
            break
        addr += len(m.regs)
    n = len(next(m for m in models if m.model_id == model_id).regs)
    regs = [unit.holding.get(addr + i, 0) for i in range(n)]
    model = ss_device.Model(model_id=model_id, model_len=n - 2)
    model.set_mb(struct.pack(f">{n}H", *regs))
    return model


def test_float_only_meter_and_inverter() -> None:
    meter = build(213, values={"W": 12500.0, "WphA": 4000.0, "WphB": 4500.0, "WphC": 4000.0,
                               "TotWhImp": 1234567.0, "TotWhExp": None, "Hz": 50.0})
    inverter = build(113, values={"DCW": 8000.0, "W": 7600.0, "St": 4})

    async def main() -> None:
        async with _serve(build(1), meter, inverter) as srv:
            met = drivers.make_device("meter", srv.endpoint, 1, "sunspec-meter", timeout_s=1.0)
            r = await met.read()
            assert r.power_kw == pytest.approx(12.5)
            assert r.phases_kw == pytest.approx((4.0, 4.5, 4.0))
            assert r.energy_import_kwh == pytest.approx(1234.567)
            assert r.energy_export_kwh is None  # float NaN: not implemented, not an error
            assert met.health.online and met.health.errors["decode"] == 0
            inv = drivers.make_device("inverter", srv.endpoint, 1, "sunspec-inverter", timeout_s=1.0)
            ri = await inv.read()
            assert ri.pv_kw == pytest.approx(8.0)
            assert (await inv.read_values())["status"] == "mppt"
            await met.bus.close()
    asyncio.run(main())


def test_acc32_export_not_implemented_is_none() -> None:
    meter = build(203, values={"W": -1500, "W_SF": 1, "TotWhExp": None, "TotWhImp": 4321,
                               "TotWh_SF": 0, "Hz": 5000, "Hz_SF": -2})

    async def main() -> None:
        async with _serve(build(1), meter) as srv:
            met = drivers.make_device("meter", srv.endpoint, 1, "sunspec-meter", timeout_s=1.0)
            r = await met.read()
            assert r.power_kw == pytest.approx(-15.0)
            assert r.energy_import_kwh == pytest.approx(4.321)
            assert r.energy_export_kwh is None  # acc32 0 = not implemented, not 0.0 kWh
            await met.bus.close()
    asyncio.run(main())


def test_battery_with_only_model_124() -> None:
    storage = build(124, values={"WChaMax": 500, "WChaMax_SF": 1, "ChaState": 7250,
                                 "ChaState_SF": -2, "InBatV": 4800, "InBatV_SF": -1})

    async def main() -> None:
        async with _serve(build(1), storage) as srv:
            bat = drivers.make_device("battery", srv.endpoint, 1, "sunspec-storage", timeout_s=1.0)
            r = await bat.read()
            assert r.soc_pct == pytest.approx(72.5)
            assert (r.max_charge_kw, r.max_discharge_kw) == pytest.approx((5.0, 5.0))
            assert r.power_kw is None
            assert bat.health.online
            assert "model 802" in bat.health.missing
            await bat.bus.close()
    asyncio.run(main())


def test_battery_limits_are_the_bms_instantaneous_ones() -> None:
    battery = build(802, values={"WChaRteMax": 100, "WDisChaRteMax": 100, "WChaDisChaMax_SF": 3,
                                 "AChaMax": 200, "ADisChaMax": 1250, "AMax_SF": -1,
                                 "V": 4000, "V_SF": -1, "SoC": 5, "SoC_SF": 0})

    async def main() -> None:
        async with _serve(build(1), battery) as srv:
            bat = drivers.make_device("battery", srv.endpoint, 1, "sunspec-storage", timeout_s=1.0)
            r = await bat.read()
            # nameplate says 100 kW; the BMS near empty allows 20 A and 125 A at 400 V
            assert (r.max_charge_kw, r.max_discharge_kw) == pytest.approx((8.0, 50.0))
            await bat.bus.close()
    asyncio.run(main())


def test_device_lacking_every_model_is_an_error_naming_them() -> None:
    async def main() -> None:
        async with _serve(build(1), build(103)) as srv:
            bat = drivers.make_device("battery", srv.endpoint, 1, "sunspec-storage", timeout_s=1.0)
            for _ in range(2):
                with pytest.raises(drivers.DeviceError, match="model 802") as err:
                    await bat.read()
            assert err.value.kind == "model"
            h = bat.health
            assert not h.online and h.errors["model"] == 2
            assert "model 802" in (h.last_error or "") and "103" in (h.last_error or "")
            await bat.bus.close()
    asyncio.run(main())


@pytest.mark.parametrize("kw", [3.0, -2.0])
def test_setpoint_through_model_704(kw: float) -> None:
    models = [build(1), build(103), build(704, values={"WSet_SF": 0, "WSetEna": 0})]

    async def main() -> None:
        async with _serve(*models) as srv:
            unit = srv.units[1]
            inv = drivers.make_device("inverter", srv.endpoint, 1, "sunspec-inverter", timeout_s=1.0)
            await inv.set_battery_setpoint(kw)
            back = _model_back(unit, 704, models)
            assert back.WSet.value == round(kw * 1000)
            assert back.WSetEna.value == 1 and back.WSetMod.value == 1
            await inv.bus.close()
    asyncio.run(main())


@pytest.mark.parametrize(("kw", "mode", "out_pct", "in_pct"), [(2.5, 2, 50, 0), (-1.0, 1, 0, 20)])
def test_setpoint_through_model_124(kw: float, mode: int, out_pct: int, in_pct: int) -> None:
    models = [build(1), build(103), build(124, values={"WChaMax": 5000, "WChaMax_SF": 0,
                                                        "InOutWRte_SF": 0})]

    async def main() -> None:
        async with _serve(*models) as srv:
            unit = srv.units[1]
            inv = drivers.make_device("inverter", srv.endpoint, 1, "sunspec-inverter", timeout_s=1.0)
            await inv.set_battery_setpoint(kw)
            back = _model_back(unit, 124, models)
            assert back.StorCtl_Mod.value == mode
            assert (back.OutWRte.value, back.InWRte.value) == (out_pct, in_pct)
            await inv.bus.close()
    asyncio.run(main())


def test_model_802_soc_reserve_is_writable() -> None:
    models = [build(1), build(802, values={"SoC_SF": -1})]

    async def main() -> None:
        async with _serve(*models) as srv:
            unit = srv.units[1]
            bat = drivers.make_device("battery", srv.endpoint, 1, "sunspec-storage", timeout_s=1.0)
            await bat.write_point("soc_reserve_min", 12.5)  # % with SoC_SF = -1 -> 125
            back = _model_back(unit, 802, models)
            assert back.SoCRsvMin.value == 125
            assert back.SoCRsvMin.cvalue == pytest.approx(12.5)
            await bat.bus.close()
    asyncio.run(main())
