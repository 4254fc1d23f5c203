"""Virtual devices: chargers and a grid meter known only through the local API.

A station without configured chargers (Electra's mode of operation) learns of its chargers
from `POST /station/config` and of its sessions from an integration (an OCPP gateway, a
kiosk) that reports each session's start, its consumption and its stop. Here those reports
become devices with the ports of the drivers' (drivers/devices.py: `read()`, `set_limit()`,
`heartbeat()`, `health`), so the daemon's controller reads, decides and writes for them as
for any charger:

- `VirtualCharger`: a connector is occupied (IEC 61851 state C) while the integration has a
  session on it, vacant (A) otherwise; its session counter adds the draw the integration
  last reported over the time until the next report. The limit written to it is what the
  API answers: the integration applies it, so the connector draws what was last reported
  but never more than the limit in force (a report above it was made before the
  integration applied it; the API-only station before it counted every session at its allocation the same way).
  Until the first report nothing has measured its draw (`measured` False: 0 kW, no cap).
- `VirtualMeter`: no meter sees these EVs, so the grid import is the configured base load
  plus what the sessions report drawing (`budget = gridCapacity - baseLoad`, as Electra's).

Nothing here does I/O; the readings are made from the last reports when read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agent.model.clock import Clock
from drivers.devices import ChargerReading, ConnectorReading, MeterReading
from drivers.health import Health

OCCUPIED, VACANT = "C", "A"


def floor2(kw: float) -> float:
    """Round down to 0.01 kW: a limit is never rounded up past what is free."""
    return math.floor(kw * 100 + 1e-9) / 100


@dataclass(frozen=True, slots=True)
class VirtualConnectorReading(ConnectorReading):
    """A connector reading whose draw may be unknown yet (no report since its start)."""

    measured: bool = True


def _health(clock: Clock) -> Health:
    """Always online: the integration's reports are the device, nothing can time out."""
    return Health(online=True, last_ok_ts=clock.now().timestamp(), latency_p50_ms=0.0,
                  latency_p99_ms=0.0, errors={}, last_error=None, consecutive_failures=0)  # fmt: skip


@dataclass(slots=True)
class VirtualConnector:
    """One connector as the integration reports it."""

    session_id: str | None = None  # the API session on it, or None: vacant
    vehicle_id: str | None = None
    vehicle_max_kw: float | None = None
    power_kw: float = 0.0  # the last reported draw (0 until a report)
    power_ts: float | None = None  # monotonic time of that report
    energy_kwh: float = 0.0  # its session counter: reported draw x time between reports
    limit_kw: float | None = None  # the last limit written (what the API answers)

    def draw_kw(self) -> float:
        """What it draws: the last report, within the limit in force."""
        return self.power_kw if self.limit_kw is None else min(self.power_kw, self.limit_kw)

    def reading(self, idx: int) -> VirtualConnectorReading:
        return VirtualConnectorReading(
            idx=idx, state=OCCUPIED if self.session_id is not None else VACANT,
            power_kw=self.draw_kw(), session_energy_kwh=self.energy_kwh,
            ev_max_kw=self.vehicle_max_kw, limit_kw=self.limit_kw,
            vehicle_id=self.vehicle_id, transaction_id=self.session_id,
            power_ts=self.power_ts, measured=self.power_ts is not None,
        )  # fmt: skip


class VirtualCharger:
    """A charger known through the API: the charger port of drivers/devices.py's `Charger`."""

    kind = "charger"
    bidirectional = False

    def __init__(self, charger_id: str, connectors: int, max_power_kw: float, clock: Clock) -> None:
        self.id = charger_id
        self.max_power_kw = max_power_kw
        self.connectors = [VirtualConnector() for _ in range(connectors)]
        self._clock = clock

    def connector(self, idx: int) -> VirtualConnector:
        if not 1 <= idx <= len(self.connectors):
            raise ValueError(f"connector {idx}: charger {self.id} has 1..{len(self.connectors)}")
        return self.connectors[idx - 1]

    # ----- what the integration reports -----
    def plug(self, idx: int, session_id: str, *, vehicle_max_kw: float | None,
             vehicle_id: str | None = None, energy_kwh: float = 0.0,
             limit_kw: float | None = None) -> None:  # fmt: skip
        """A session starts (or is resumed) on `idx`: its counter from `energy_kwh`, with the
        limit its integration applies (None: not known yet)."""
        self.connectors[idx - 1] = VirtualConnector(
            session_id, vehicle_id, vehicle_max_kw, energy_kwh=energy_kwh, limit_kw=limit_kw)

    def unplug(self, idx: int) -> None:
        """The session on `idx` ended: vacant, nothing drawn, no limit handed out."""
        self.connectors[idx - 1] = VirtualConnector()

    def report(self, idx: int, power_kw: float, t: float) -> float:
        """The integration says the session on `idx` draws `power_kw` now (monotonic `t`);
        the draw last reported counts until now. Returns the kWh added."""
        c = self.connector(idx)
        kwh = 0.0
        if c.power_ts is not None:
            kwh = c.power_kw * max(0.0, t - c.power_ts) / 3600.0
            c.energy_kwh += kwh
        c.power_kw, c.power_ts = power_kw, t
        return kwh

    # ----- the charger port -----
    @property
    def health(self) -> Health:
        return _health(self._clock)

    def reading(self) -> ChargerReading:
        """What `read()` gives, without waiting for anything (the cycle reads it in step)."""
        conns = tuple(c.reading(i) for i, c in enumerate(self.connectors, 1))
        return ChargerReading(conns, self.max_power_kw, self._clock.now().timestamp())

    async def read(self) -> ChargerReading:
        return self.reading()

    def write_limit(self, idx: int, kw: float) -> None:
        """The limit the API answers from now on (synchronous: the API's own handlers and
        the control loop's `cycle_now`), at the API's resolution: rounded down to 0.01 kW
        (a limit is never rounded up past what is free)."""
        if kw < 0:
            raise ValueError(f"limit: {kw} kW must be >= 0 (API chargers do not discharge)")
        self.connector(idx).limit_kw = floor2(kw)

    async def set_limit(self, idx: int, kw: float) -> None:
        self.write_limit(idx, kw)

    async def heartbeat(self) -> None:
        """Nothing to keep alive: the integration applies the last limit it was answered."""

    async def set_fallback(self, kw: float, timeout_s: float) -> None:
        """No fallback register: a silent agent leaves the integration its last limits (the
        store keeps them: a restart resumes each session with the limit in force)."""


class VirtualMeter:
    """The grid meter of a station whose EVs no meter sees: base load + reported draws."""

    kind = "meter"

    def __init__(self, base_load_kw: float, chargers: list[VirtualCharger], clock: Clock) -> None:
        self.base_load_kw = base_load_kw
        self.chargers = chargers
        self._clock = clock

    @property
    def health(self) -> Health:
        return _health(self._clock)

    def power_kw(self) -> float:
        return self.base_load_kw + sum(c.draw_kw() for ch in self.chargers for c in ch.connectors
                                       if c.session_id is not None)  # fmt: skip

    def reading(self) -> MeterReading:
        return MeterReading(self.power_kw(), None, None, None, self._clock.now().timestamp())

    async def read(self) -> MeterReading:
        return self.reading()


class VirtualDevices:
    """The `StationDevices` of a station with API chargers: one `VirtualCharger` per charger
    of `settings.station.chargers` (named by its `device`) and the `VirtualMeter` as
    `settings.station.grid_meter`; no endpoints, nothing to open or close."""

    def __init__(self, settings: Any, clock: Clock) -> None:
        self._clock = clock
        self.configure(settings)

    def configure(self, settings: Any) -> None:
        """The chargers of `settings` (at start, and in place of the old ones when a new
        station configuration replaces them: the control loop and its reader keep this
        object), each vacant."""
        clock = self._clock
        self.settings = settings
        st = settings.station
        self.chargers: dict[str, Any] = {
            ch.id: VirtualCharger(ch.id, ch.connectors, ch.max_power_kw, clock)
            for ch in st.chargers
        }
        self.meter = VirtualMeter(st.pessimistic_base_load_kw, list(self.chargers.values()), clock)
        self.by_name: dict[str, Any] = {ch.device: self.chargers[ch.id] for ch in st.chargers}
        self.by_name[st.grid_meter] = self.meter
        self.endpoints: dict[str, list[str]] = {"api": list(self.by_name)}
        self.inverter = None

    # Read and written by calls, not I/O: the control loop runs its cycle without awaiting
    # anything (agent/control/loop.py `cycle_now`), and a write is in force once made.
    instant = True

    def health(self) -> dict[str, Any]:
        return {name: dev.health for name, dev in self.by_name.items()}

    async def close(self) -> None:
        return None
