from datetime import UTC, datetime, timedelta

import pytest

from agent.energy.battery_health import BatteryHealth
from allocator.forecast import WeekdayProfile

MONDAY = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)


def test_profile_smooths_per_weekday_and_falls_back_to_other_days():
    p = WeekdayProfile(alpha=0.5)
    t = MONDAY + timedelta(hours=12)
    p.observe(t, 10.0)
    p.observe(t + timedelta(days=7), 20.0)  # next Monday, same slot
    assert p.predict(t) == pytest.approx(15.0)
    # Tuesday at noon was never seen: the Monday value stands in.
    assert p.predict(t + timedelta(days=1)) == pytest.approx(15.0)
    assert p.predict(MONDAY) == 0.0
    fc = p.forecast(t - timedelta(minutes=15), 3)
    assert fc.tolist() == pytest.approx([0.0, 15.0, 0.0])


def test_battery_health_cycles_and_alerts():
    h = BatteryHealth(capacity_kwh=200.0)
    h.record_power(-100.0, 2.0)  # charge 200 kWh
    h.record_power(100.0, 2.0)  # discharge 200 kWh
    assert h.throughput_kwh == pytest.approx(400.0)
    assert h.equivalent_full_cycles == pytest.approx(1.0)
    h.record_soh(measured_capacity_kwh=150.0)
    kinds = {a["kind"] for a in h.alerts([25.0, 50.0], [3.30, 3.40])}
    assert kinds == {"battery.soh", "battery.temperature", "battery.imbalance"}
    assert BatteryHealth(200.0).alerts([25.0], [3.3, 3.31]) == []
