"""Issue 16: when two EVs could share a slot either way at the same cost, the plan feeds the
one leaving sooner first (earliest deadline first). A plan that feeds the long stay first is
as cheap on paper but has no slack left for the short one when the next re-plan sees an
arrival, and the short stay leaves short (bench/savings.py, docs/planner.md)."""

from __future__ import annotations

import pytest

from allocator.planner import ChargerSpec, PlanRequest, SessionSpec, plan


def request(short_departure_h: float, short_first: bool) -> PlanRequest:
    # 2 h of flat prices, a 50 kW connection, two 100 kW chargers: only the grid binds.
    n = 8
    sessions = [
        SessionSpec("LONG", "DC1", departure_h=2.0, energy_needed=40.0, max_power=100.0),
        SessionSpec("SHORT", "DC2", departure_h=short_departure_h, energy_needed=20.0,
                    max_power=100.0),
    ]
    return PlanRequest(
        import_price=[0.30] * n, export_price=[0.05] * n, pv_power=[0.0] * n,
        base_load=[0.0] * n, grid_capacity=50.0,
        chargers=[ChargerSpec("DC1", 100.0), ChargerSpec("DC2", 100.0)], slot_hours=0.25,
        sessions=sessions[::-1] if short_first else sessions)


@pytest.mark.parametrize("short_first", [False, True])
@pytest.mark.parametrize("short_departure_h", [0.5, 0.75])
def test_the_ev_leaving_sooner_takes_the_first_slot(short_departure_h: float, short_first: bool):
    p = plan(request(short_departure_h, short_first))
    assert p.unmet["SHORT"] == pytest.approx(0.0, abs=1e-6)
    assert p.unmet["LONG"] == pytest.approx(0.0, abs=1e-6)
    # Both targets fit whichever EV charges first; the short stay gets the whole
    # connection until it is full (20 kWh / 0.95 from the grid), the long one the rest.
    need = 20.0 / 0.95
    short, long_ = p.session_power["SHORT"], p.session_power["LONG"]
    assert short[0] == pytest.approx(50.0, abs=1e-6)
    assert long_[0] == pytest.approx(0.0, abs=1e-6)
    assert short[1] == pytest.approx(need / 0.25 - 50.0, abs=1e-6)
    assert short[0] * 0.25 + short[1] * 0.25 == pytest.approx(need, abs=1e-6)
