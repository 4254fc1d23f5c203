"""OCPP phase switching without sockets (docs/ocpp.md, "Phase switching"): the profiles'
numberPhases / phaseToUse, the A conversion at the connector's count, the count in effect
(agent/ocpp/phases.py) through an accepted, a refused and an ignored switch, and what
`sems config check` says of the per-charger settings."""

from __future__ import annotations

import logging

import pytest
from ocpp.messages import Call, _validate_payload

from agent.config.ocpp import OcppChargerConfig
from agent.config.settings import AgentSettings, cross_check, warnings
from agent.ocpp.link import parse_sampled
from agent.ocpp.phases import ConnectorPhases
from agent.ocpp.profiles import connector_profile
from agent.ocpp.rates import from_rate, to_rate

CFG = OcppChargerConfig(charge_point_id="AC1", max_power_kw=11.0)


def _period(version: str, profile: dict) -> dict:
    schedule = profile["chargingSchedule"]
    return (schedule[0] if version == "2.0.1" else schedule)["chargingSchedulePeriod"][0]


def _valid(version: str, profile: dict) -> None:
    """The library's own schema for SetChargingProfile takes it."""
    payload = ({"connectorId": 1, "csChargingProfiles": profile} if version == "1.6"
               else {"evseId": 1, "chargingProfile": profile})
    _validate_payload(Call(unique_id="1", action="SetChargingProfile", payload=payload),
                      ocpp_version=version)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.parametrize(("unit", "phases", "switching", "use", "want"), [
    ("A", 3, False, False, {"numberPhases": 3}),  # A per phase of three, as before
    ("W", 3, False, False, {}),  # W on a charger that does not switch: no count
    ("W", 1, True, False, {"numberPhases": 1}),  # the switch itself, whatever the unit
    ("A", 1, True, True, {"numberPhases": 1, "phaseToUse": 1}),  # 2.0.1 only: see below
    ("A", 3, True, True, {"numberPhases": 3}),  # phaseToUse only with one phase
])  # fmt: skip
def test_connector_profiles_carry_the_count_and_the_phase_to_use(version, unit, phases,
                                                                 switching, use, want):
    profile = connector_profile(version, 1, 16.0, unit, stack_level=5, transaction_id=7,
                                number_phases=phases, switching=switching, phase_to_use=use)
    period = _period(version, profile)
    if version == "1.6":  # 1.6 has no phaseToUse
        want = {k: v for k, v in want.items() if k != "phaseToUse"}
    assert {k: v for k, v in period.items() if k not in ("startPeriod", "limit")} == want
    _valid(version, profile)


def test_amps_convert_at_the_connectors_count():
    assert to_rate(11.04, "A", CFG) == 16.0  # three phases of 230 V
    assert to_rate(3.68, "A", CFG, phases=1) == 16.0  # switched to one: a third of the kW
    assert from_rate(16.0, "A", CFG, 1) == pytest.approx(3.68)
    assert to_rate(3.68, "W", CFG, phases=1) == 3680.0  # W do not depend on it


def test_the_count_changes_once_an_accepted_switch_has_had_its_pause():
    p = ConnectorPhases(3, 3)
    p.request(1)
    assert p.want == 1 and p.reading(0.0, 10.0, "AC1/1") == 3  # asked, not answered
    p.answered(1, True, now=100.0, where="AC1/1")
    assert p.reading(105.0, 10.0, "AC1/1") == 3  # the charger is still switching
    assert p.reading(110.0, 10.0, "AC1/1") == 1
    p.request(3)
    p.answered(3, True, now=200.0, where="AC1/1")
    assert p.reading(209.0, 10.0, "AC1/1") == 1 and p.reading(210.0, 10.0, "AC1/1") == 3


@pytest.mark.parametrize("answer", ["Rejected", "Timeout", "error: CallError"])
def test_a_switch_not_accepted_leaves_the_old_count_and_profiles_go_back_to_it(answer, caplog):
    p = ConnectorPhases(3, 3)
    p.request(1)
    p.answered(1, answer == "Accepted", now=100.0, where="AC1/1")
    assert p.want == 3  # the next profile (the limit resent) carries three again
    assert p.reading(1000.0, 10.0, "AC1/1") == 3  # the switcher gives the switch up on it
    assert "profile on 1 phase(s) not accepted: stays on 3" in caplog.text


def test_a_limit_refused_on_the_count_in_effect_changes_nothing():
    p = ConnectorPhases(1, 1)
    p.answered(1, False, now=5.0, where="AC1/1")
    assert (p.effect, p.want) == (1, 1)


def test_current_on_a_second_conductor_overrules_a_count_of_one(caplog):
    caplog.set_level(logging.WARNING)
    p = ConnectorPhases(3, 3)
    p.request(1)
    p.answered(1, True, now=0.0, where="AC1/1")
    p.observe((10.0, 9.8, 9.9))  # sampled during the pause: says nothing of after
    assert p.reading(10.0, 10.0, "AC1/1") == 1
    p.observe((15.9, 0.0, 0.2))  # on one phase, as asked
    assert p.reading(20.0, 10.0, "AC1/1") == 1
    p.observe((10.0, 9.8, 9.9))  # accepted, but it charges on three
    assert p.reading(30.0, 10.0, "AC1/1") == 3 and p.want == 3
    assert "draws [10.0, 9.8, 9.9] A: counted on 3" in caplog.text


def test_the_currents_the_loop_learns_from_are_only_samples_taken_after_the_switch():
    """Back on three, a sample from one phase (all on L1) would teach the learner a 1-phase
    EV; only samples after the switch's pause reach the control loop as `currents_a`."""
    p = ConnectorPhases(1, 1)
    p.observe((15.9, 0.0, 0.0))  # on one phase
    assert p.currents == (15.9, 0.0, 0.0)
    p.request(3)
    p.answered(3, True, now=0.0, where="AC1/1")
    assert p.currents is None  # the sample on one phase says nothing of three
    p.observe((0.0, 0.0, 0.0))  # during the pause
    assert p.reading(5.0, 10.0, "AC1/1") == 1
    assert p.reading(10.0, 10.0, "AC1/1") == 3 and p.currents is None  # pause over: dropped
    p.observe((6.3, 6.2, 6.3))
    assert p.reading(11.0, 10.0, "AC1/1") == 3 and p.currents == (6.3, 6.2, 6.3)


def test_per_phase_currents_are_read_from_meter_values():
    sample = parse_sampled([
        {"measurand": "Current.Import", "phase": "L1", "value": "15.9", "unit": "A"},
        {"measurand": "Current.Import", "phase": "L2-N", "value": "0.0", "unit": "A"},
        {"measurand": "Current.Import", "phase": "L3", "value": "-0.1", "unit": "A"},
        {"measurand": "Current.Import", "value": "16.0", "unit": "A"},  # no phase: ignored
    ])  # fmt: skip
    assert sample == {"current_l1_a": 15.9, "current_l2_a": 0.0, "current_l3_a": 0.1}


BASE = {
    "station": {"id": "S1", "grid_capacity_kw": 60.0, "grid_meter": "meter",
                "pessimistic_base_load_kw": 10.0,
                "chargers": [{"id": "C1", "device": "ac1", "max_power_kw": 11.0}]},
    "devices": [
        {"name": "meter", "kind": "meter", "profile": "sim-meter", "endpoint": "tcp://127.0.0.1:1502"},
        {"name": "ac1", "kind": "charger", "protocol": "ocpp",
         "ocpp": {"charge_point_id": "AC-01", "version": "1.6"}},
    ],
    "phase_switch": {"enabled": True},
}  # fmt: skip


def _settings(ocpp: dict, charger: dict | None = None, enabled: bool = True) -> AgentSettings:
    dev = {**BASE["devices"][1], "ocpp": {**BASE["devices"][1]["ocpp"], **ocpp}}
    st = {**BASE["station"], "chargers": [{**BASE["station"]["chargers"][0], **(charger or {})}]}
    return AgentSettings(**{**BASE, "station": st, "devices": [BASE["devices"][0], dev],
                            "phase_switch": {"enabled": enabled}})


def test_config_check_takes_a_1_6_opt_in_with_its_pause():
    s = _settings({"phase_switching": True, "phase_switch_pause_s": 30})
    assert cross_check(s) == [] and warnings(s) == []


@pytest.mark.parametrize(("ocpp", "charger", "message"), [
    ({"phase_switching": True, "phases": 1}, None,
     "devices[1].ocpp.phase_switching: needs phases = 3 (it has 1)"),
    ({"phase_switching": True}, {"phases": 1},
     "devices[1].ocpp.phase_switching: its station charger has phases = 1"),
    ({"phase_switch_pause_s": 20}, None,  # 1.6 without the opt-in: the pause never applies
     "devices[1].ocpp.phase_switch_pause_s: set but phase switching is off"),
    ({"phase_switching": False, "version": "2.0.1", "phase_switch_pause_s": 20}, None,
     "devices[1].ocpp.phase_switch_pause_s: set but phase switching is off"),
])  # fmt: skip
def test_config_check_names_the_phase_switching_field(ocpp, charger, message):
    problems = cross_check(_settings(ocpp, charger))
    assert any(p.startswith(message) for p in problems), problems


def test_a_2_0_1_pause_alone_is_fine_it_follows_the_device_model():
    assert cross_check(_settings({"version": "2.0.1", "phase_switch_pause_s": 20})) == []


@pytest.mark.parametrize(("ocpp", "field"), [
    ({"phase_switch_pause_s": 0}, "phase_switch_pause_s"),
    ({"phase_switch_pause_s": 601}, "phase_switch_pause_s"),
    ({"phase_switching": "sometimes"}, "phase_switching"),
])  # fmt: skip
def test_bad_values_name_the_field(ocpp, field):
    with pytest.raises(Exception) as e:
        _settings(ocpp)
    assert f"devices.1.ocpp.{field}" in str(e.value).replace("[", ".").replace("]", "")


def test_an_opt_in_without_phase_switch_enabled_is_a_warning():
    s = _settings({"phase_switching": True}, enabled=False)
    assert cross_check(s) == []
    assert warnings(s) == ["devices[1].ocpp.phase_switching: true, but [phase_switch] enabled "
                           "is false: the agent will not switch it"]
