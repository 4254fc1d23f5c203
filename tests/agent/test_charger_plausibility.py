"""Plausibility rules (agent/control/plausibility.py) on hand-made snapshots: each kind of
implausible charger reading is refused for that cycle, the last plausible one stands in."""

from __future__ import annotations

from datetime import UTC, datetime

from agent.config.settings import ChargerSettings
from agent.control.plausibility import Plausibility
from agent.model.snapshot import ChargerState, ConnectorState, Snapshot

CHARGERS = {
    "AC": ChargerSettings(id="AC", device="ac", max_power_kw=22.0, connectors=1),
    "V2G": ChargerSettings(id="V2G", device="v", max_power_kw=11.0, connectors=1, v2g=True),
}


def snap(t: float, ac_kw: float, ac_kwh: float, v2g_kw: float = 0.0) -> Snapshot:
    return Snapshot(t, datetime(2026, 6, 17, tzinfo=UTC), 30.0, None, None, (
        ChargerState("AC", True, (ConnectorState("AC", 1, "C", ac_kw, ac_kwh),)),
        ChargerState("V2G", True, (ConnectorState("V2G", 1, "C", v2g_kw, 1.0),)),
    ))  # fmt: skip


def test_each_implausible_reading_is_refused_and_the_last_plausible_one_stands_in():
    p = Plausibility(CHARGERS)
    assert p.filter(snap(0, 10.0, 5.0, v2g_kw=-8.0)).chargers[0].reachable  # V2G may discharge
    assert not p.refused
    for bad in (snap(1, -5.0, 5.1),   # a charger that is not V2G discharging
                snap(2, 40.0, 5.2),   # beyond its 22 kW rating by more than 10 % + 1 kW
                snap(3, 10.0, 2.0)):  # the energy counter going backwards, EV still plugged
        out = p.filter(bad)
        ac = out.chargers[0]
        assert not ac.reachable and "AC" in p.refused, p.refused
        assert ac.connectors[0].power_kw == 10.0 and ac.connectors[0].energy_kwh == 5.0
        assert out.chargers[1].reachable  # the other charger is believed
        assert p.modes() == {"implausible:AC"}
    assert p.filter(snap(4, 12.0, 5.3)).chargers[0].reachable  # plausible again
    assert not p.refused and p.modes() == frozenset()
    assert p.filter(snap(5, 22.0 * 1.1 + 0.9, 5.4)).chargers[0].reachable  # inside the margin


def ac_snap(t: float, kwh: float, tx: str | None = None) -> Snapshot:
    return Snapshot(t, datetime(2026, 6, 17, tzinfo=UTC), 30.0, None, None, (
        ChargerState("AC", True, (ConnectorState("AC", 1, "C", 7.0, kwh, transaction_id=tx),)),
    ))  # fmt: skip


def test_a_counter_that_restarted_is_refused_once_then_believed():
    # A charger rebooting under a plugged EV restarts its session counter at 0: refused
    # for the cycle that shows the drop, believed from the next reading on (it used to stay
    # "implausible" until the new count passed 30 kWh).
    p = Plausibility(CHARGERS)
    assert p.filter(ac_snap(0, 30.0)).chargers[0].reachable
    assert not p.filter(ac_snap(1, 0.1)).chargers[0].reachable
    assert p.modes() == {"implausible:AC"}
    for t, kwh in ((2, 0.2), (3, 0.3)):
        assert p.filter(ac_snap(t, kwh)).chargers[0].reachable
    assert not p.refused


def test_a_new_transaction_starts_its_counter_again_by_right():
    # An unplug and re-plug between two reads: the OCPP transaction id changed, the
    # counter restarting at 0 is the new session's, not an implausible reading.
    p = Plausibility(CHARGERS)
    assert p.filter(ac_snap(0, 12.0, tx="41")).chargers[0].reachable
    assert p.filter(ac_snap(1, 0.0, tx="42")).chargers[0].reachable
    assert not p.refused
    assert p.filter(ac_snap(2, 3.0, tx="42")).chargers[0].reachable
    assert not p.filter(ac_snap(3, 1.0, tx="42")).chargers[0].reachable  # same id, back: refused
