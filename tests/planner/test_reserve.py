"""The battery reserve against unforeseen arrivals, and following a plan over a long step."""

from __future__ import annotations

import numpy as np
import pytest

from agent.energy.replay import Battery, reserve_energy
from allocator.planner import (
    BatterySpec,
    ChargerSpec,
    Plan,
    Planner,
    PlanRequest,
    apply_plan,
    reserve_value,
)


def four_hours(battery: BatterySpec, peak_so_far: float) -> PlanRequest:
    # 10 kW of base load for 4 h at 0.30 EUR/kWh; refilling the battery is valued at 0.05.
    return PlanRequest(
        import_price=[0.30] * 4, export_price=[0.0] * 4, pv_power=[0.0] * 4,
        base_load=[10.0] * 4, grid_capacity=100.0, chargers=[ChargerSpec("AC1", 22.0)],
        battery=battery, demand_charge=1.0, peak_so_far=peak_so_far, slot_hours=1.0,
    )


def battery(**kw) -> BatterySpec:
    spec = dict(capacity=100.0, energy=90.0, max_charge_power=50.0, max_discharge_power=50.0,
                min_soc=0.0, max_soc=1.0, charge_efficiency=1.0, discharge_efficiency=1.0,
                end_value=0.05)
    spec.update(kw)
    return BatterySpec(**spec)


def test_without_a_reserve_the_battery_is_spent_on_the_price_spread():
    p = Planner().plan(four_hours(battery(), peak_so_far=10.0))
    assert p.battery_power == pytest.approx([10.0] * 4, abs=1e-6)


def test_the_reserve_keeps_the_battery_from_price_arbitrage():
    # The peak (10 kW) is already paid: importing the base load costs only its price, and a
    # reserve worth more than the 0.25 EUR/kWh spread per hour keeps the battery full. Near
    # the horizon's end the reserve tapers to what 50 kW could still discharge before it
    # (50 kWh after hour 3, none after hour 4), so the last two hours may use 40 kWh.
    p = Planner().plan(four_hours(battery(reserve_energy=90.0, reserve_value=1.0), 10.0))
    assert p.battery_power == pytest.approx([0.0, 0.0, 10.0, 10.0], abs=1e-6)
    assert p.battery_energy[1] == pytest.approx(90.0, abs=1e-6)
    assert p.peak == pytest.approx(10.0, abs=1e-6)


def test_the_reserve_never_stops_the_battery_shaving_a_peak():
    # Nothing paid yet: holding 40 kWh of reserve would cost 10 kW of peak (10 EUR), so the
    # first stage shaves it to 0 and the reserve stage may not raise it again.
    p = Planner().plan(four_hours(battery(reserve_energy=90.0, reserve_value=1.0), 0.0))
    assert p.peak == pytest.approx(0.0, abs=1e-5)
    assert p.battery_power == pytest.approx([10.0] * 4, abs=1e-5)


def test_reserve_value_scales_with_the_demand_charge_and_vanishes_without_one():
    assert reserve_value(0.4, 0.25, rate=0.5) == pytest.approx(0.8)
    assert reserve_value(0.0, 0.25) == 0.0


def test_reserve_is_sized_from_the_battery_limits():
    b = Battery(capacity=200.0, max_charge=100.0, max_discharge=100.0, soc_start=0.5,
                min_soc=0.1, max_soc=0.95, round_trip=0.9)
    assert reserve_energy(b, None) == pytest.approx(190.0)  # the whole window
    assert reserve_energy(b, 1.0) == pytest.approx(120.0)  # 1 h at 100 kW above 20 kWh
    assert reserve_energy(b, 0.0) == pytest.approx(20.0)  # off: just the minimum SoC


def short_burst_plan() -> Plan:
    # A 6-minute burst at the start of a 15-minute slot, nothing after it.
    starts, hours = np.array([0.0, 0.1]), np.array([0.1, 0.15])
    return Plan(
        slot_starts_h=starts, slot_hours=hours, grid_power=np.array([100.0, 0.0]),
        import_cap=np.array([100.0, 40.0]), battery_power=np.array([20.0, -10.0]),
        session_power={"EV": np.array([80.0, 0.0])}, unmet={"EV": 0.0}, peak=40.0,
        objective=0.0, status="Optimal", solve_seconds=0.0, build_seconds=0.0,
        peak_cap=np.array([400.0, 400.0]), slot_index=np.array([0, 0]),
        session_present={"EV": np.array([True, False])},
    )


def test_a_long_step_follows_the_plan_average_not_the_value_at_its_start():
    p = short_burst_plan()
    assert p.mean_over(p.grid_power, 0.0, 0.2) == pytest.approx(50.0)  # 10 kWh over 0.2 h
    assert p.mean_over(p.battery_power, 0.0, 0.0) == pytest.approx(20.0)  # no window
    request = {"gridCapacity": 400.0, "battery": {"maxDischargePower": 100.0,
                                                  "maxChargePower": 100.0},
               "sessions": [{"sessionId": "EV", "vehicleMaxPower": 150.0}]}
    out = apply_plan(request, p, 0.0, window_h=0.2)
    assert out["gridCapacity"] == pytest.approx((0.1 * 100.0 + 0.1 * 40.0) / 0.2)
    # The session's power is averaged over its connected time only (it leaves at 0.1 h).
    assert out["sessions"][0]["powerCap"] == pytest.approx(80.0)
    assert out["battery"]["maxDischargePower"] == pytest.approx(5.0)
