"""[ocpp] settings and each OCPP charger's own entry.

The listener, TLS, the authorisation mode and the stack levels are station-wide; the
charge point id, protocol version, rate unit, phases and password belong to one charger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OcppDeviceSettings(_Section):
    """A [[devices]] entry's `ocpp` table: what only the charger itself can say."""

    charge_point_id: str = Field(
        min_length=1, max_length=48, pattern=r"^[A-Za-z0-9._:\-]+$",
        description="the id the charger connects with (the last path segment of its URL)",
    )
    version: Literal["1.6", "2.0.1"] | None = Field(
        None, description="expected protocol version; None: whatever the charger negotiates"
    )
    rate_unit: Literal["W", "A"] | None = Field(
        None, description="override the unit read from the charger at boot"
    )
    phases: int = Field(3, ge=1, le=3, description="AC phases the charger uses (A conversion)")
    voltage: float = Field(230.0, gt=0, description="phase-to-neutral voltage (A conversion)")
    current_step_a: float = Field(0.1, gt=0, description="limits in A are rounded down to this")
    power_step_w: float = Field(1.0, gt=0, description="limits in W are rounded down to this")
    password_file: Path | None = Field(
        None, description="security profile 1/2: basic-auth password (a credentials file)"
    )
    # 1 <-> 3 phase switching through a profile's numberPhases (docs/ocpp.md, "Phase
    # switching"; the switch itself is the control loop's, under [phase_switch]).
    phase_switching: bool | None = Field(
        None, description="the charger switches between 1 and 3 phases on a profile's "
        "numberPhases. OCPP 1.6 has no standard key that says so: true opts in (the "
        "installer checked the charger allows it). 2.0.1 says so itself "
        "(SmartChargingCtrlr.Phases3to1, read at boot): None follows it, false turns it off, "
        "true is refused by a charger that reports it cannot"
    )
    phase_switch_pause_s: float = Field(
        60.0, gt=0, le=600, description="how long the charger stops charging to switch "
        "phases: the agent holds the connector at 0 and books the old count that long. No "
        "OCPP message reports it, hence a default on the long side: too long only delays the "
        "raise after a switch, too short lets the agent raise the limit (and book the new "
        "count) while the charger may still be switching; set it from the charger's manual"
    )
    # Local controller mode: how this charger's relayed connection logs in at the CSMS.
    upstream_password_file: Path | None = Field(
        None, description="upstream security profile 1/2: the basic-auth password the CSMS "
        "expects from this charge point (a credentials file)"
    )
    upstream_ca_file: Path | None = Field(
        None, description="wss upstream: CA bundle that signs the CSMS certificate "
        "(None: the system's)"
    )
    upstream_cert_file: Path | None = Field(
        None, description="upstream security profile 3: this charge point's client certificate"
    )
    upstream_key_file: Path | None = Field(
        None, description="its private key (a credentials file)"
    )


class OcppChargerConfig(OcppDeviceSettings):
    """One OCPP charge point as the adapter needs it: the device entry plus the station's
    word on its connectors and rating."""

    connectors: int = Field(1, ge=1, le=8, description="connectors (1.6) / EVSEs (2.0.1)")
    max_power_kw: float = Field(gt=0, description="charger rating, the ceiling of its max profile")


class OcppSettings(_Section):
    host: str = Field("0.0.0.0", description="listener address")
    port: int = Field(8887, ge=0, le=65535, description="listener port (0: any free port)")
    path: str = Field("/ocpp", pattern=r"^/[A-Za-z0-9._/\-]*$",
                      description="URL path before the charge point id")
    tls_cert_file: Path | None = Field(None, description="station certificate (wss, profile 2)")
    tls_key_file: Path | None = Field(None, description="its private key")
    allow: list[str] = Field(
        default_factory=list,
        description="charge point ids allowed besides the configured chargers",
    )
    authorize: Literal["accept_all", "allow_list"] = Field(
        "accept_all", description="Authorize / start: accept every id tag, or only id_tags"
    )
    id_tags: list[str] = Field(default_factory=list, description="allowed id tags")
    stack_level: int = Field(
        5, ge=0, le=100, description="stack level of the agent's TxProfile / TxDefaultProfile"
    )
    max_profile_stack_level: int = Field(
        5, ge=0, le=100, description="stack level of the agent's max profile (the fallback)"
    )
    min_interval_s: float = Field(
        1.0, ge=0, description="a connector's limit is sent at most this often (decreases "
        "that the charger accepted so far go out at once)"
    )
    increases_per_cycle: int = Field(
        25, ge=0, description="under the control loop, at most this many chargers get a "
        "higher limit sent per cycle, the rest in later cycles (decreases are never held "
        "back); 0: no cap"
    )
    call_timeout_s: float = Field(
        5.0, gt=0, le=60, description="a call without an answer by then counts as failed"
    )
    heartbeat_interval_s: int = Field(60, ge=1, description="interval given at boot")
    meter_interval_s: int = Field(1, ge=1, description="MeterValueSampleInterval asked at boot")
    upstream: str | None = Field(
        None, description="local controller mode: the operator's CSMS URL (ws:// or wss://); "
        "each charger is relayed to <upstream>/<charge point id>"
    )
    relay_stack_level: int = Field(
        50, ge=1, le=100, description="local controller mode: stack level of the agent's "
        "profiles, above every stack level the CSMS uses (its profiles then bind through "
        "the agent's, which never exceed them)"
    )
    relay_queue_max: int = Field(
        10000, ge=10, description="local controller mode: charger messages kept while the "
        "CSMS is unreachable (beyond it the oldest non-transaction messages go first)"
    )


def phase_switch_problems(devices: list[tuple[int, OcppDeviceSettings, int | None]]
                          ) -> list[str]:  # fmt: skip
    """For `sems config check`: each OCPP charger's phase switching against its phases and
    its station entry's (`devices`: index, the ocpp table, the station charger's phases)."""
    problems: list[str] = []
    for i, d, station_phases in devices:
        where = f"devices[{i}].ocpp"
        if not d.phase_switching:
            # A pause that never applies is a sign of a missing opt-in (1.6 has no other).
            off = d.phase_switching is False or d.version == "1.6"
            if "phase_switch_pause_s" in d.model_fields_set and off:
                problems.append(f"{where}.phase_switch_pause_s: set but phase switching is "
                                "off (set phase_switching = true, or remove it)")
            continue
        if d.phases != 3:
            problems.append(f"{where}.phase_switching: needs phases = 3 (it has {d.phases}): "
                            "only a 3-phase charger switches to one phase and back")
        if station_phases is not None and station_phases != 3:
            problems.append(f"{where}.phase_switching: its station charger has phases = "
                            f"{station_phases}; a charger that switches is booked on 3")
    return problems


def upstream_problems(o: OcppSettings, devices: list[tuple[int, OcppDeviceSettings]]) -> list[str]:
    """For `sems config check`: local controller mode's URL, stack levels and each
    charger's upstream security profile (files that can be seen from here)."""
    from agent.config.secrets import check_secret_file

    problems: list[str] = []
    for i, d in devices:
        where = f"devices[{i}].ocpp"
        if (d.upstream_cert_file is None) != (d.upstream_key_file is None):
            problems.append(f"{where}.upstream_cert_file, upstream_key_file: give both or neither")
        if d.upstream_cert_file is not None and o.upstream is not None and \
                not o.upstream.startswith("wss://"):
            problems.append(f"{where}.upstream_cert_file: client certificates need a wss:// "
                            "ocpp.upstream (security profile 3)")
        for key in ("upstream_password_file", "upstream_key_file"):
            path = getattr(d, key)
            if path is not None:
                problems += check_secret_file(f"{where}.{key}", path)
        for key in ("upstream_ca_file", "upstream_cert_file"):
            path = getattr(d, key)
            if path is not None and not path.is_file():
                problems.append(f"{where}.{key}: no such file {path}")
    if o.upstream is None:
        return problems
    if not o.upstream.startswith(("ws://", "wss://")):
        problems.append("ocpp.upstream: expected ws:// or wss://")
    return problems
