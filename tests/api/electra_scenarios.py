"""Electra's API scenarios (the request sequences of tests/api/test_api_electra.py,
test_api_fleet.py and test_api_power_caps.py) as data, and a runner that plays one against
a stepped station and records every answer.

The record (electra_answers.json, made by the old API-only station before its deletion) is
the comparison for the station that replaced it, virtual devices under the daemon's
controller (issue 11, "One station"): it must give the same answers, or differences that
are justified. An answer is normalised so that it depends only on the
requests: generated ids become "#1", "#2"... in order of first appearance, and a station's
cycle count and cycle time (which measure the machine) are left out.

A step is one of:
- (method, path, body-or-None, save-name-or-None): an HTTP request; `{name}` in the path is
  an id saved by an earlier step ("session.sessionId", "session_id" or "id" of its answer);
- ("cycle", n, None, None): n control cycles;
- ("advance", seconds, None, None): time passes, no cycle (silence);
- ("restart", config-or-None, None, None): a SIGKILL and a new start on the same store (with
  that station configuration, else the scenario's own);
- ("rows", None, None, None): the store's session rows (status, stop reason, energy, limit...);
- ("events", None, None, None): every session event handed to the uplink hook so far.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

ELECTRA = {
    "stationId": "ELECTRA_PARIS_15",
    "gridCapacity": 330,
    "chargers": [{"id": "CP001", "maxPower": 200, "connectors": 2},
                 {"id": "CP002", "maxPower": 200, "connectors": 2}],
}
TWO_SINGLE = {"stationId": "S", "gridCapacity": 100,
              "chargers": [{"id": "A", "maxPower": 100, "connectors": 1},
                           {"id": "B", "maxPower": 100, "connectors": 1}]}
# The stepped station's wall clock starts here (agent.model.clock.ManualClock's default).
WALL = datetime(2026, 6, 17, 12, 0, tzinfo=UTC)
DROPPED_KEYS = {"cycles", "cycle_ms"}  # they measure the machine, not the station
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

Step = tuple[str, Any, Any, Any]


def at(**delta: float) -> str:
    return (WALL + timedelta(**delta)).isoformat()


def session(charger: str, idx: int, vmax: float | None) -> dict[str, Any]:
    body: dict[str, Any] = {"connectorId": {"chargerId": charger, "idx": idx}}
    if vmax is not None:
        body["vehicleMaxPower"] = vmax
    return body


def fleet(**over: Any) -> dict[str, Any]:
    return {"vehicle_id": "V1", "fleet_id": "F1", "start_level": 20, "end_level": 80,
            "battery_capacity_kwh": 60, "departure": at(hours=3), "charger_id": "CP001",
            "connector_idx": 1, **over}


STATUS: Step = ("GET", "/station/status", None, None)
# sems-edge's own view of every session: binding, energy, cost, kind, vehicle and fleet ids.
SESSIONS: Step = ("GET", "/api/v1/station/sessions", None, None)


def cycle(n: int) -> Step:
    return ("cycle", n, None, None)


def fleet_lifecycle(kind: str) -> list[Step]:
    base = f"/api/v1/{kind}/sessions"
    return [
        ("POST", base, fleet(), "f"),
        ("GET", base + "/{f}", None, None),
        ("PUT", base + "/{f}", {"end_level": 90, "max_power_kw": 50}, None),
        ("POST", base + "/{f}/start", None, None),
        cycle(2), STATUS, SESSIONS,
        ("GET", base + "/{f}", None, None),
        ("POST", base + "/{f}/start", None, None),
        ("GET", base + "?vehicle_id=V1", None, None),
        ("POST", base + "/{f}/stop", None, None),
        STATUS,
        ("POST", base + "/{f}/stop", None, None),
        ("DELETE", base + "/{f}", None, None),
        ("GET", base + "/{f}", None, None),
    ]


CAPS = "/api/v1/grid/power-caps"
ROWS: Step = ("rows", None, None, None)
EVENTS: Step = ("events", None, None, None)
# A station with a base load: the budget is gridCapacity - baseLoad = 50 kW.
DEPOT = {"stationId": "S1", "gridCapacity": 60, "baseLoad": 10,
         "chargers": [{"id": "DC1", "maxPower": 50, "connectors": 2},
                      {"id": "AC1", "maxPower": 22, "connectors": 2}]}
DEPOT_SMALLER = {**DEPOT, "chargers": [{"id": "DC1", "maxPower": 50, "connectors": 1}]}


def advance(seconds: float) -> Step:
    return ("advance", seconds, None, None)


def restart(config: dict[str, Any] | None = None) -> Step:
    return ("restart", config, None, None)


def report(name: str, kw: float) -> Step:
    return ("POST", "/sessions/{" + name + "}/power-update", {"consumedPower": kw}, None)

SCENARIOS: dict[str, tuple[dict[str, Any], list[Step]]] = {
    "health_and_config": (ELECTRA, [("GET", "/health", None, None),
                                    ("GET", "/station/config", None, None)]),
    "example_80_120_130": (ELECTRA, [
        ("POST", "/sessions", session("CP001", 1, 80), "a"),
        ("POST", "/sessions", session("CP001", 2, 150), "b"),
        ("POST", "/sessions", session("CP002", 1, 150), "c"),
        STATUS, SESSIONS, cycle(1), STATUS, cycle(1), STATUS, SESSIONS,
    ]),
    "newcomer_gets_free_headroom_then_fair_share": (TWO_SINGLE, [
        ("POST", "/sessions", session("A", 1, 100), "a"),
        cycle(1),
        ("POST", "/sessions", session("B", 1, 100), "b"),
        STATUS, cycle(1), STATUS, cycle(1), STATUS,
    ]),
    "four_arrivals_within_capacity": (ELECTRA, [
        step for c, i in [("CP001", 1), ("CP002", 1), ("CP001", 2), ("CP002", 2)]
        for step in (("POST", "/sessions", session(c, i, 150), None), STATUS)
    ] + [cycle(2), STATUS]),
    "arrivals_between_cycles": (ELECTRA, [
        ("POST", "/sessions", session("CP001", 1, 200), None), cycle(1),
        ("POST", "/sessions", session("CP002", 1, 200), None), cycle(1), STATUS,
        ("POST", "/sessions", session("CP001", 2, 60), None), STATUS, cycle(1), STATUS,
        cycle(1), STATUS,
    ]),
    "unknown_connector_busy_and_bad_bodies": (ELECTRA, [
        ("POST", "/sessions", session("NOPE", 1, 50), None),
        ("POST", "/sessions", session("CP001", 0, 50), None),
        ("POST", "/sessions", session("CP001", 3, 50), None),
        ("POST", "/sessions", session("CP001", 1, 50), None),
        ("POST", "/sessions", session("CP001", 1, 50), None),
        ("POST", "/sessions", session("CP001", 1, 0), None),
        ("POST", "/sessions", session("CP001", 1, None), None),
        ("POST", "/sessions", {"connectorId": {"chargerId": "CP001"}, "vehicleMaxPower": 5}, None),
        STATUS,
    ]),
    "power_update_caps_and_frees_power": (ELECTRA, [
        ("POST", "/sessions", session("CP001", 1, 150), "a"),
        ("POST", "/sessions", session("CP002", 1, 300), "b"),
        cycle(2), STATUS,
        ("POST", "/sessions/{a}/power-update", {"consumedPower": 40}, None),
        cycle(2), STATUS,
        ("POST", "/sessions/{b}/power-update", {"consumedPower": 200}, None),
        ("POST", "/sessions/{a}/power-update", {"consumedPower": 41}, None),
        cycle(2), STATUS,
        ("POST", "/sessions/{a}/power-update", {"consumedPower": 150}, None),
        cycle(2), STATUS, SESSIONS,
        ("POST", "/sessions/nope/power-update", {"consumedPower": 3}, None),
        ("POST", "/sessions/{a}/power-update", {"consumedPower": -1}, None),
    ]),
    "stop_then_404": (ELECTRA, [
        ("POST", "/sessions", session("CP001", 1, 50), "a"),
        ("POST", "/sessions/{a}/stop", None, None),
        ("POST", "/sessions/{a}/stop", None, None),
        STATUS,
    ]),
    "replacing_config_drops_sessions": (ELECTRA, [
        ("POST", "/sessions", session("CP001", 1, 50), None),
        ("POST", "/station/config", {"stationId": "S2", "gridCapacity": 50,
                                     "chargers": [{"id": "X", "maxPower": 22, "connectors": 1}]}, None),
        STATUS,
        ("POST", "/sessions", session("X", 1, 11), None),
        ("GET", "/station/config", None, None),
    ]),
    "invalid_config_keeps_the_old_one": (ELECTRA, [
        ("POST", "/station/config", {"stationId": "S", "gridCapacity": -1, "chargers": []}, None),
        ("POST", "/station/config", {"gridCapacity": 10, "chargers": []}, None),
        ("POST", "/station/config", {"stationId": "S", "gridCapacity": 10, "chargers": [
            {"id": "A", "maxPower": 5, "connectors": 1}, {"id": "A", "maxPower": 5, "connectors": 1}]}, None),
        ("POST", "/station/config", {"stationId": "S", "gridCapcity": 10}, None),
        ("GET", "/station/config", None, None),
    ]),
    "allocations_match_the_allocator": (ELECTRA, [
        ("POST", "/sessions", session("CP001", 1, 60), None),
        ("POST", "/sessions", session("CP001", 2, 200), None),
        ("POST", "/sessions", session("CP002", 2, 33), None),
        cycle(2), STATUS,
    ]),
    "fleet_charging_lifecycle": (ELECTRA, fleet_lifecycle("charging")),
    "fleet_v2g_lifecycle": (ELECTRA, fleet_lifecycle("v2g")),
    "fleet_start_needs_a_connector": (ELECTRA, [
        ("POST", "/api/v1/charging/sessions", fleet(charger_id=None, connector_idx=None), "f"),
        ("POST", "/api/v1/charging/sessions/{f}/start", None, None),
        ("POST", "/api/v1/charging/sessions/{f}/start", {"charger_id": "CP002", "connector_idx": 2}, None),
        cycle(2), STATUS,
        ("GET", "/api/v1/fleet/F1/charging", None, None),
        ("GET", "/api/v1/vehicles/V1/energy", None, None),
    ]),
    "power_cap_set_shortened_cancelled": (ELECTRA, [
        ("POST", "/sessions", session("CP001", 1, 200), None),
        ("POST", "/sessions", session("CP002", 1, 200), None),
        cycle(2), STATUS,
        ("POST", CAPS, {"cap_kw": 100, "end": at(hours=2)}, "cap"),
        cycle(2), STATUS,
        ("GET", CAPS, None, None),
        ("GET", "/api/v1/grid/status", None, None),
        ("PATCH", CAPS + "/{cap}", {"end": at(hours=3)}, None),
        ("PATCH", CAPS + "/{cap}", {"end": at(hours=1)}, None),
        ("DELETE", CAPS + "/{cap}", None, None),
        cycle(2), STATUS,
        ("DELETE", CAPS + "/{cap}", None, None),
        ("POST", CAPS, {"cap_kw": -1, "end": at(hours=1)}, None),
    ]),
    "rows_events_and_energy": (DEPOT, [
        ("POST", "/sessions", session("DC1", 1, 40), "a"),
        ("POST", "/sessions", session("DC1", 2, 40), "b"),
        ("POST", "/sessions", session("AC1", 1, 11), "c"),
        STATUS, cycle(1), STATUS,
        report("a", 20), advance(360), report("a", 20), cycle(1), STATUS,
        report("b", 25), advance(120), report("b", 30), cycle(2), STATUS,
        ("POST", "/sessions/{c}/stop", None, None), cycle(1), STATUS, SESSIONS, ROWS, EVENTS,
    ]),
    "silence_stops_a_quiet_session": (DEPOT, [
        ("POST", "/sessions", session("DC1", 1, 40), "talking"),
        ("POST", "/sessions", session("DC1", 2, 40), "silent"),
        cycle(1), advance(600), report("talking", 25), cycle(1), STATUS,
        advance(299), report("talking", 25), cycle(1), STATUS,
        advance(1), cycle(1), STATUS, cycle(1), STATUS, ROWS, EVENTS,
        report("silent", 10),
    ]),
    "restart_resumes_with_the_limit_handed_out": (DEPOT, [
        ("POST", "/sessions", session("DC1", 1, 40), "a"),
        ("POST", "/sessions", session("AC1", 2, 22), "b"),
        cycle(2), STATUS,
        report("a", 30), advance(360), report("a", 30), cycle(1), STATUS, ROWS,
        advance(30), restart(), STATUS, SESSIONS, ROWS, EVENTS,
        ("POST", "/sessions", session("DC1", 2, 40), "c"),
        STATUS, cycle(1), STATUS, cycle(1), STATUS,
        report("a", 30), advance(120), report("a", 30), ROWS,
        advance(900), cycle(1), STATUS, ROWS, EVENTS,
    ]),
    "restart_on_a_smaller_station": (DEPOT, [
        ("POST", "/sessions", session("AC1", 1, 11), "gone"),
        ("POST", "/sessions", session("DC1", 2, 40), "fewer"),
        ("POST", "/sessions", session("DC1", 1, 40), "kept"),
        cycle(1), restart(DEPOT_SMALLER), STATUS, ROWS, EVENTS, cycle(2), STATUS,
    ]),
    "config_replace_stops_the_rows": (DEPOT, [
        ("POST", "/sessions", session("DC1", 1, 40), "a"),
        ("POST", "/sessions", session("AC1", 1, 11), "b"),
        cycle(1), report("a", 30),
        ("POST", "/station/config", DEPOT_SMALLER, None),
        STATUS, ROWS, EVENTS,
        ("POST", "/sessions", session("DC1", 1, 40), None), cycle(1), STATUS,
    ]),
    "grid_and_battery_resources": (ELECTRA, [
        ("GET", "/api/v1/grid/status", None, None),
        ("GET", "/api/v1/grid/price", None, None),
        ("GET", "/api/v1/grid/demand", None, None),
        ("GET", "/api/v1/grid/supply", None, None),
        ("GET", "/api/v1/battery/health", None, None),
    ]),
}


class SteppedStation(Protocol):
    http: httpx.Client
    events: list[dict[str, Any]]

    def step(self, n: int = 1) -> None: ...

    def advance(self, seconds: float) -> None: ...

    def restart(self, config: dict[str, Any] | None = None) -> None: ...

    def stored_sessions(self) -> list[dict[str, Any]]: ...


def _saved_id(answer: Any) -> str:
    if isinstance(answer, dict):
        if isinstance(answer.get("session"), dict):
            return str(answer["session"]["sessionId"])
        for key in ("id", "session_id"):
            if key in answer:
                return str(answer[key])
    raise AssertionError(f"no id to save in {answer!r}")


class _Ids:
    """Generated ids -> "#1", "#2"... in order of first appearance."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def add(self, raw: str) -> None:
        self.names.setdefault(raw, f"#{len(self.names) + 1}")

    def text(self, s: str) -> str:
        for m in UUID.findall(s):
            self.add(m)
        for raw, name in self.names.items():
            s = s.replace(raw, name)
        return s

    def tree(self, v: Any) -> Any:
        if isinstance(v, dict):
            return {self.text(str(k)): self.tree(x) for k, x in v.items() if k not in DROPPED_KEYS}
        if isinstance(v, list):
            return [self.tree(x) for x in v]
        if isinstance(v, str):
            return self.text(v)
        return v


def play(station: SteppedStation, steps: list[Step]) -> list[dict[str, Any]]:
    """Every answer of `steps`, normalised (see the module docstring)."""
    ids, saved, record = _Ids(), {}, []
    for method, what, body, save in steps:
        if method == "cycle":
            station.step(what)
            record.append({"cycle": what})
            continue
        if method == "advance":
            station.advance(what)
            record.append({"advance": what})
            continue
        if method == "restart":
            station.restart(what)
            record.append({"restart": what is not None})
            continue
        if method == "rows":
            record.append({"rows": ids.tree(station.stored_sessions())})
            continue
        if method == "events":
            record.append({"events": ids.tree(list(station.events))})
            continue
        path = what.format(**saved)
        r = station.http.request(method, path, json=body)
        answer = r.json() if r.content else None
        if save is not None and r.is_success:
            saved[save] = _saved_id(answer)
            ids.add(saved[save])
        record.append({"request": f"{method} {ids.text(what.format(**saved))}", "status": r.status_code,
                       "answer": ids.tree(answer)})
    return record
