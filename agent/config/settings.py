"""Agent settings: one TOML file (default /etc/sems/agent.toml) with SEMS_* variables over it.

Environment variables use `__` between levels: `SEMS_CONTROL__PERIOD_S=0.5` overrides
`[control] period_s`. Every key has a default and a description here, beside the component
that uses it; `config/agent.example.toml` shows them all. `load()` returns the settings or
raises `ConfigError` listing every problem with its key path (for `sems config check` and
for the daemon, which refuses to start with the same messages).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from agent.config import device_check
from agent.config.api import ApiServerSettings
from agent.config.circuits import CircuitSettings, circuit_fallback_kw, tree_problems, tree_warnings
from agent.config.mqtt import STATION_ID_PATTERN, MqttSettings
from agent.config.ocpp import (
    OcppDeviceSettings,
    OcppSettings,
    phase_switch_problems,
    upstream_problems,
)
from agent.config.phase_switch import PhaseSwitchSettings
from agent.config.v2g import V2gSettings

DEFAULT_PATH = Path("/etc/sems/agent.toml")
# IEC 61851 minimum charging current (6 A) on three phases at 230 V.
MIN_POWER_3PH_KW = 6 * 230 * 3 / 1000


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceSettings(_Section):
    name: str = Field(min_length=1, description="name the station topology refers to")
    kind: Literal["meter", "battery", "inverter", "charger"] = Field(
        description="capability the driver offers"
    )
    protocol: Literal["modbus", "ocpp"] = Field(
        "modbus", description="modbus, or ocpp for a charger that connects to [ocpp]"
    )
    profile: str = Field(
        "",
        description="register-map profile: a name under config/profiles/ or a path to a TOML file",
    )
    endpoint: str = Field(
        "", description="tcp://HOST:PORT for Modbus TCP, rtu:///dev/ttyXXX for Modbus RTU (RS-485)"
    )
    ocpp: OcppDeviceSettings | None = Field(
        None, description="protocol = ocpp: charge point id, version, rate unit, phases"
    )
    unit_id: int = Field(
        1, ge=0, le=255, description="Modbus unit (device) id; 248-255 only over TCP "
        "(KEBA and Vestel answer on 255)"
    )
    invert: bool = Field(
        False, description="the device reports power with the opposite sign (a meter "
        "mounted the other way round, e.g. SolarEdge export meters): flip it"
    )
    baudrate: int = Field(9600, gt=0, description="RTU only: line speed")
    parity: Literal["N", "E", "O"] = Field("N", description="RTU only: parity")
    timeout_s: float = Field(
        0.1, gt=0, le=5, description="per-request timeout; keep well inside the control period"
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        url = urlsplit(value)
        if url.scheme == "tcp":
            try:
                port = url.port
            except ValueError:  # urlsplit refuses a port out of range or not a number
                raise ValueError(f"{value!r}: port must be a number 1..65535") from None
            if not url.hostname or port is None:
                raise ValueError(f"{value!r}: expected tcp://HOST:PORT")
        elif url.scheme == "rtu":
            if not url.path.startswith("/"):
                raise ValueError(f"{value!r}: expected rtu:///dev/ttyXXX")
        else:
            raise ValueError(f"{value!r}: expected tcp://HOST:PORT or rtu:///dev/ttyXXX")
        return value

    @model_validator(mode="after")
    def _protocol(self) -> DeviceSettings:
        if self.protocol == "modbus":
            for key in ("profile", "endpoint"):
                if not getattr(self, key):
                    raise ValueError(f"{key}: required for a Modbus device")
        elif self.kind != "charger":
            raise ValueError("protocol: ocpp is for chargers only")
        elif self.ocpp is None:
            object.__setattr__(self, "ocpp", OcppDeviceSettings(charge_point_id=self.name))
        return self


class ChargerSettings(_Section):
    id: str = Field(min_length=1, description="charger id used in sessions and the uplink")
    device: str = Field(description="name of the [[devices]] entry of kind charger")
    max_power_kw: float = Field(gt=0, description="charger's rated power, shared by its connectors")
    connectors: int = Field(1, ge=1, le=8, description="number of connectors")
    min_power_kw: float = Field(
        MIN_POWER_3PH_KW,
        ge=0,
        description="smallest non-zero limit (IEC 61851: 6 A per phase; 4.14 kW on 3x230 V AC)",
    )
    fallback_kw: float | None = Field(
        None,
        ge=0,
        description="limit the charger applies if the agent goes silent; default: its share "
        "of (grid capacity - pessimistic base load) by max power",
    )
    v2g: bool = Field(
        False,
        description="bidirectional: its profile takes negative limits, so permitted sessions "
        "may discharge (V2G, [v2g])",
    )
    # its place in the electrical tree ([[station.circuits]], agent/config/circuits.py)
    circuit: str | None = Field(None, description="[[station.circuits]] id it is wired to")
    phases: Literal[1, 3] = Field(3, description="conductors: 1 or 3")
    phase_rotation: str = Field("L1L2L3", description="grid phases its L1, L2, L3 are wired to")
    max_current_a: float | None = Field(None, gt=0, description="rating, A per phase")


class BatterySettings(_Section):
    inverter: str = Field(description="[[devices]] entry of kind inverter that takes the setpoint")
    bms: str | None = Field(None, description="[[devices]] entry of kind battery (the BMS)")
    min_soc: float = Field(10.0, ge=0, le=100, description="no discharge at or below (percent)")
    max_charge_kw: float = Field(gt=0, description="rated charge power (BMS limits apply below)")
    max_discharge_kw: float = Field(gt=0, description="rated discharge power")
    capacity_kwh: float | None = Field(
        None, gt=0, description="nameplate energy; without it the planner leaves the battery out"
    )
    degradation_cost_eur_kwh: float = Field(
        0.0, ge=0, description="wear cost per kWh of throughput, for the planner"
    )
    soh_alert_pct: float = Field(80.0, ge=0, le=100, description="alert below this SoH")
    temp_max_c: float = Field(45.0, description="alert above this cell temperature")
    temp_min_c: float = Field(0.0, description="alert below this cell temperature")
    imbalance_max_v: float = Field(
        0.05, gt=0, description="alert when max - min cell voltage exceeds this"
    )


class StationSettings(_Section):
    id: str = Field(min_length=1, description="station id (MQTT topics, reports)")
    grid_capacity_kw: float = Field(gt=0, description="grid connection limit (import), kW")
    grid_meter: str = Field(description="[[devices]] entry of kind meter at the grid connection")
    pessimistic_base_load_kw: float = Field(
        ge=0,
        description="base load assumed when the grid meter is stale and nothing higher was "
        "seen recently; also sizes the chargers' fallback limits",
    )
    pv_inverter: str | None = Field(None, description="inverter entry whose PV power is read")
    chargers: list[ChargerSettings] = Field(default_factory=list, description="charge points")
    battery: BatterySettings | None = Field(None, description="stationary battery, if any")
    circuits: list[CircuitSettings] = Field(
        default_factory=list, description="the electrical tree: sub-boards and their fuses"
    )
    voltage_v: float = Field(230.0, gt=0, description="phase-to-neutral voltage")


class ControlSettings(_Section):
    period_s: float = Field(0.25, ge=0.1, le=1.0, description="control cycle period")
    read_deadline_fraction: float = Field(
        0.5, gt=0, lt=1, description="reads must finish within this share of the period"
    )
    stale_after_s: float = Field(
        1.0, gt=0, description="a value older than this is stale (degraded modes apply)"
    )
    deadband_kw: float = Field(
        0.5, ge=0, description="limit changes smaller than this are not written"
    )
    # 30 s: evcc's loop interval (it writes such residues at its next loop); at most one
    # extra write per connector per 30 s, and a residue waits < 0.5 kW x 30 s = 4.2 Wh.
    deadband_hold_s: float = Field(
        30.0,
        ge=0,
        description="an increase under deadband_kw wanted this long is written anyway "
        "(out of confirmed headroom, as any increase); 0: never",
    )
    headroom_margin_kw: float = Field(
        2.0, ge=0, description="kept free below the grid capacity when granting increases"
    )
    limit_follow_s: float = Field(
        1.5,
        ge=0,
        le=30,
        description="a lowered limit frees power for increases only after this long (chargers "
        "take 1-5 s to follow) or once the draw has come down to it",
    )
    comm_timeout_s: int = Field(
        10, ge=2, le=3600, description="charger communication timeout set at start-up"
    )
    refresh_fraction: float = Field(
        0.4, gt=0, lt=1, description="limits are rewritten after this share of comm_timeout_s"
    )
    probe_margin_kw: float = Field(
        1.0, ge=0, description="a session drawing below its limit is capped at measured + this..."
    )
    probe_margin_fraction: float = Field(
        0.1, ge=0, le=1, description="...or + this share of its draw, whichever is larger"
    )
    cap_after_s: float = Field(
        3.0, ge=0, description="a session must draw below its limit this long before it is capped"
    )
    max_pause_s: float = Field(
        300.0, gt=0, description="longest a session stays paused for lack of minimum power"
    )
    base_load_window_s: float = Field(
        900.0, gt=0, description="how far back the highest base load is remembered"
    )
    telemetry_interval_s: float = Field(
        10.0, gt=0, description="telemetry to the uplink ([mqtt] telemetry_interval_s wins)"
    )
    health_interval_s: float = Field(
        60.0, gt=0, description="health report to the uplink ([mqtt] health_interval_s wins)"
    )


class TariffSettings(_Section):
    """Defaults for hours no cloud tariff or carbon forecast covers (agent/store/signals.py)."""

    import_eur_kwh: float = Field(0.25, ge=-10, le=10, description="import price")
    export_eur_kwh: float = Field(0.05, ge=-10, le=10, description="export price")
    demand_charge_eur_kw: float = Field(
        0.0, ge=0, description="charge on the day's highest 15-minute average import"
    )
    carbon_g_kwh: float = Field(300.0, ge=0, description="grid carbon intensity")
    carbon_price_eur_t: float = Field(0.0, ge=0, description="carbon price for the planner")


class PlannerSettings(_Section):
    enabled: bool = Field(True, description="run the horizon planner (off: plain fair sharing)")
    horizon_h: float = Field(24.0, gt=0, le=72, description="planning horizon")
    replan_s: float = Field(
        900.0, ge=10, description="re-plan this often (wall time); events re-plan sooner"
    )
    solve_timeout_s: float = Field(
        5.0, gt=0, le=60, description="a plan not solved within this is dropped"
    )
    signal_poll_s: float = Field(
        5.0, gt=0, description="how often new tariffs, caps and schedules are looked for"
    )
    default_energy_kwh: float = Field(
        30.0, ge=0, description="energy target of an EV without schedule or target"
    )
    default_dwell_h: float = Field(
        8.0, gt=0, description="stay of an EV without schedule, from its arrival"
    )


class StorageSettings(_Section):
    db_path: Path = Field(
        Path("/var/lib/sems/agent.db"), description="SQLite store (systemd StateDirectory)"
    )
    max_pages: int | None = Field(
        None, ge=16, description="cap the store at this many pages (tests of a full disk)"
    )


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SEMS_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    station: StationSettings = Field(description="topology: grid, chargers, battery, PV")
    devices: list[DeviceSettings] = Field(default_factory=list, description="Modbus devices")
    control: ControlSettings = Field(default_factory=ControlSettings)  # type: ignore[arg-type]
    mqtt: MqttSettings | None = Field(
        None, description="cloud uplink (agent/config/mqtt.py); absent: no uplink"
    )
    api: ApiServerSettings = Field(
        default_factory=ApiServerSettings,  # type: ignore[arg-type]
        description="local API (agent/api/server.py): Unix socket, optional loopback TCP",
    )
    storage: StorageSettings = Field(default_factory=StorageSettings)  # type: ignore[arg-type]
    tariff: TariffSettings = Field(default_factory=TariffSettings)  # type: ignore[arg-type]
    planner: PlannerSettings = Field(default_factory=PlannerSettings)  # type: ignore[arg-type]
    v2g: V2gSettings = Field(
        default_factory=V2gSettings,  # type: ignore[arg-type]
        description="vehicle-to-grid (agent/control/v2g.py)",
    )
    phase_switch: PhaseSwitchSettings = Field(
        default_factory=PhaseSwitchSettings,  # type: ignore[arg-type]
        description="1 <-> 3 phase switching (agent/control/phase_switch.py)",
    )
    ocpp: OcppSettings = Field(
        default_factory=OcppSettings,  # type: ignore[arg-type]
        description="OCPP central system for protocol = ocpp chargers (agent/ocpp/)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load() passes the TOML file's content as init values; the environment comes first
        # so SEMS_* variables win over the file (sources are deep-merged, nested keys too).
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _mqtt_defaults(self) -> AgentSettings:
        m = self.mqtt
        if m is None:
            return self
        # One station id everywhere: [mqtt] station_id defaults to [station] id.
        if "station_id" not in m.model_fields_set and re.match(STATION_ID_PATTERN, self.station.id):
            object.__setattr__(self, "mqtt", m.model_copy(update={"station_id": self.station.id}))
        # One period each: the uplink's, when [mqtt] sets it, drives the control loop's hook.
        periods: dict[str, Any] = {
            key: getattr(m, key)
            for key in ("telemetry_interval_s", "health_interval_s")
            if key in m.model_fields_set
        }
        if periods:
            object.__setattr__(self, "control", self.control.model_copy(update=periods))
        return self

    def device(self, name: str) -> DeviceSettings:
        return next(d for d in self.devices if d.name == name)

    def fallback_kw(self, charger: ChargerSettings) -> float:
        """Limit a charger falls back to when the agent is silent: its share of what the grid
        can give EVs under the pessimistic base load, by rated power, so that all chargers
        at their fallbacks keep the station under its grid capacity."""
        if charger.fallback_kw is not None:
            return charger.fallback_kw
        total = sum(c.max_power_kw for c in self.station.chargers)
        spare = max(0.0, self.station.grid_capacity_kw - self.station.pessimistic_base_load_kw)
        return min(charger.max_power_kw, spare * charger.max_power_kw / total,
                   circuit_fallback_kw(self.station, charger, self.station.voltage_v))


class ConfigError(Exception):
    """Every problem of a settings file, each as 'key.path: message'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load(path: str | Path = DEFAULT_PATH) -> AgentSettings:
    """Read, merge with SEMS_* variables, validate and cross-check; raise ConfigError."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None
    try:
        settings = AgentSettings(**data)
    except ValidationError as exc:
        raise ConfigError([_format(e) for e in exc.errors()]) from None
    problems = cross_check(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def cross_check(s: AgentSettings) -> list[str]:
    """References between sections, which field validation alone cannot see."""
    problems: list[str] = []
    kinds: dict[str, str] = {}
    for i, dev in enumerate(s.devices):
        if dev.name in kinds:
            problems.append(f"devices[{i}].name: duplicate device name {dev.name!r}")
        kinds[dev.name] = dev.kind

    def ref(path: str, name: str | None, kind: str) -> None:
        if name is None:
            return
        if name not in kinds:
            problems.append(f"{path}: no [[devices]] entry named {name!r}")
        elif kinds[name] != kind:
            problems.append(f"{path}: device {name!r} is a {kinds[name]}, expected a {kind}")

    st = s.station
    ref("station.grid_meter", st.grid_meter, "meter")
    ref("station.pv_inverter", st.pv_inverter, "inverter")
    if st.battery is not None:
        ref("station.battery.inverter", st.battery.inverter, "inverter")
        ref("station.battery.bms", st.battery.bms, "battery")
    seen: set[str] = set()
    for i, ch in enumerate(st.chargers):
        if ch.id in seen:
            problems.append(f"station.chargers[{i}].id: duplicate charger id {ch.id!r}")
        seen.add(ch.id)
        ref(f"station.chargers[{i}].device", ch.device, "charger")
        if ch.min_power_kw > ch.max_power_kw:
            problems.append(f"station.chargers[{i}].min_power_kw: above max_power_kw")
    if st.pessimistic_base_load_kw >= st.grid_capacity_kw:
        problems.append(
            "station.pessimistic_base_load_kw: must be below grid_capacity_kw "
            "(nothing would be left for the chargers)"
        )
    for i, c in enumerate(st.circuits):
        ref(f"station.circuits[{i}].meter", c.meter, "meter")
    problems += tree_problems(st)
    if s.control.stale_after_s < s.control.period_s:
        problems.append("control.stale_after_s: must be at least control.period_s")
    problems += _uplink_and_api_problems(s)
    problems += device_check.problems(s)
    problems += _ocpp_problems(s)
    return problems


def warnings(s: AgentSettings) -> list[str]:
    """Legal but suspicious settings (`sems config check` prints them, still ok)."""
    out = tree_warnings(s.station)
    if not s.phase_switch.enabled:
        out += [f"devices[{i}].ocpp.phase_switching: true, but [phase_switch] enabled is "
                "false: the agent will not switch it" for i, d in enumerate(s.devices)
                if d.protocol == "ocpp" and d.ocpp is not None and d.ocpp.phase_switching]
    return out


def _ocpp_problems(s: AgentSettings) -> list[str]:
    """[ocpp] and protocol = ocpp devices: ids, secrets, certificate files."""
    from agent.config.secrets import check_secret_file

    problems: list[str] = []
    ids: set[str] = set()
    for i, dev in enumerate(s.devices):
        if dev.ocpp is None or dev.protocol != "ocpp":
            continue
        if dev.ocpp.charge_point_id in ids:
            problems.append(f"devices[{i}].ocpp.charge_point_id: duplicate "
                            f"{dev.ocpp.charge_point_id!r}")
        ids.add(dev.ocpp.charge_point_id)
        if dev.ocpp.password_file is not None:
            problems += check_secret_file(f"devices[{i}].ocpp.password_file",
                                          dev.ocpp.password_file)
    o = s.ocpp
    if (o.tls_cert_file is None) != (o.tls_key_file is None):
        problems.append("ocpp.tls_cert_file, ocpp.tls_key_file: give both or neither")
    for key in ("tls_cert_file", "tls_key_file"):
        path = getattr(o, key)
        if path is not None and not path.is_file():
            problems.append(f"ocpp.{key}: no such file {path}")
    problems += upstream_problems(o, [(i, d.ocpp) for i, d in enumerate(s.devices)
                                      if d.ocpp is not None and d.protocol == "ocpp"])
    phases = {ch.device: ch.phases for ch in s.station.chargers}
    problems += phase_switch_problems([(i, d.ocpp, phases.get(d.name))
                                       for i, d in enumerate(s.devices)
                                       if d.ocpp is not None and d.protocol == "ocpp"])
    return problems


def _uplink_and_api_problems(s: AgentSettings) -> list[str]:
    """[mqtt] and [api]: what field validation cannot see (ids, secrets, files)."""
    from agent.config.secrets import check_secret_file

    problems: list[str] = []
    m = s.mqtt
    if m is not None:
        if not re.match(STATION_ID_PATTERN, m.station_id):
            problems.append(
                "mqtt.station_id: station id must be 1-64 of A-Z a-z 0-9 . _ - "
                "(set [mqtt] station_id when [station] id has other characters)"
            )
        for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            path = getattr(m, key)
            if path is not None and not path.is_file():
                problems.append(f"mqtt.{key}: no such file {path}")
        if m.password_file is not None:
            problems += check_secret_file("mqtt.password_file", m.password_file)
        if m.command_hmac_key_file is not None:
            problems += check_secret_file("mqtt.command_hmac_key_file", m.command_hmac_key_file)
    a = s.api
    if a.tcp_port is not None:
        if a.token is None and a.token_file is None:
            problems.append("api.token: TCP (api.tcp_port) needs token or token_file")
        if a.token is not None and a.token_file is not None:
            problems.append("api.token, api.token_file: give one, not both")
    if a.token_file is not None:
        problems += check_secret_file("api.token_file", a.token_file)
    return problems


def _format(error: Any) -> str:
    path = ""
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    # pydantic prefixes a validator's own message with "Value error, ": noise for a technician.
    return f"{path or '(file)'}: {error['msg'].removeprefix('Value error, ')}"
