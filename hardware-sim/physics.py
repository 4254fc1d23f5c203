"""Station physics: EVs, chargers, stationary battery, PV inverter and the grid meter.

Everything is stepped by `StationModel.advance(dt)` with simulated seconds, so tests drive
it with an injected clock and never sleep. Units: kW, kWh, seconds, SoC as 0..1.
Signs: grid > 0 imports; battery > 0 discharges into the station; connector power > 0
charges the EV.

Charger dynamics (documented contract for the agent):
- A written limit takes effect after `delay_s`, then the power ramps at `ramp_kw_s`:
  DC chargers 0.5 s and 100 kW/s, AC chargers 1.0 s and 22 kW/s (an AC wallbox changes its
  PWM duty cycle and the EV's on-board charger follows slowly; DC power electronics react
  faster).
- Communication timer: a write to `heartbeat` *or* to any connector's `power_limit` resets
  it. It is armed by the first such write (a charger that never heard from an EMS runs at
  its own maximum); once `comm_timeout_s` passes without one, every connector drops to
  `fallback_kw` until the next write.
- Grid-side power feeds the EV battery with efficiency 0.95; `session_energy` is grid side,
  an EV's `energy_needed_kwh` is battery side.
- V2G: a bidirectional charger (`ChargerSpec.v2g`) takes limits down to -max_kw. An EV with
  `v2g=True` follows a negative limit (up to its max_kw and v2g_max_kw, 22 kW), taking grid-side kW / 0.90 out of
  its battery, down to its `v2g_min_soc` (0.2) only: there its power drops to 0 at once (the
  EV ends the discharge). Other EVs, and unidirectional chargers, treat a negative limit as 0.
  The grid meter sees the discharge as negative charger power.
- Phase switching (AC chargers whose map has `charge_phases`, as Alfen 1215): a connector
  told to charge on 1 (or 3) phases first pauses charging (power 0 at once, as the charger
  opens its contactor) for the profile's `phase_switch_pause_s` simulated seconds, then
  charges on the new count under the limit in force. On 1 phase every EV draws on the
  charger's first conductor only (6-32 A); a 1-phase EV is unaffected by the count. A
  switch asked for during the pause restarts it; asking for the count in effect does nothing.
- An EV may pause by itself (`Ev.paused_until`, simulated s; `Simulator.pause_ev`), as EVs do
  for cell balancing or preconditioning (IEC 61851 state C with no current asked, OCPP
  SuspendedEV): its limit untouched, it draws nothing until then (ramping down and back up
  at the charger's rate), then draws what its limit allows again.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .fuses import Breaker
from .station import ChargerSpec, StationSpec

log = logging.getLogger("hardware_sim")

CHARGING_EFFICIENCY = 0.95
V2G_EFFICIENCY = 0.90  # battery-side kWh per grid-side kWh delivered: 1 / 0.90
V2G_MIN_SOC = 0.2
V2G_MAX_KW = 22.0  # maxV2gPower: what a V2G vehicle discharges at most
TAPER_SOC = 0.8  # above this SoC the EV's acceptance falls linearly to 5% at full
MAX_SUBSTEP_S = 0.05
HISTORY_PERIOD_S = 0.1
HISTORY_LEN = 200_000  # 5.5 h at 10 Hz
BASE_LOAD_PHASE_SHARE = (0.4, 0.3, 0.3)  # site loads are rarely balanced
NOMINAL_VOLTAGE = 230.0
MAX_PHASE_A = 32.0  # what an EV draws on one conductor at most (IEC 61851 AC: 6-32 A)


def _clamp(x: float, low: float, high: float) -> float:
    return min(high, max(low, x))


def _ramp(current: float, target: float, rate: float, dt: float) -> float:
    step = rate * dt
    return current + _clamp(target - current, -step, step)


@dataclass
class Ev:
    max_kw: float
    capacity_kwh: float
    soc: float
    energy_needed_kwh: float
    v2g: bool = False
    session_id: str = ""
    departure_s: float | None = None
    delivered_kwh: float = 0.0  # net into the battery (V2G takes it back out)
    v2g_min_soc: float = V2G_MIN_SOC
    v2g_max_kw: float = V2G_MAX_KW
    # False: the charger cannot tell the EV's maximum (IEC 61851 PWM signalling, many AC
    # chargers): its ev_max_power register reads 0, and the agent learns only from the draw.
    announces_max: bool = True
    phases: int = 3  # draws on the charger's first `phases` conductors (1: a 1-phase EV)
    paused_until: float = -math.inf  # simulated s: paused by itself until then (draws 0)

    @property
    def done(self) -> bool:
        return self.delivered_kwh >= self.energy_needed_kwh - 1e-9 or self.soc >= 1.0

    def accept_kw(self) -> float:
        """What the EV will draw now: its maximum, tapered above TAPER_SOC."""
        if self.done:
            return 0.0
        if self.soc <= TAPER_SOC:
            return self.max_kw
        return self.max_kw * max(0.05, (1.0 - self.soc) / (1.0 - TAPER_SOC))

    def discharge_kw(self) -> float:
        """How much it will give back now (kW grid side, >= 0): its maximum while above
        its V2G floor, nothing otherwise or without V2G."""
        if not self.v2g or self.soc <= self.v2g_min_soc:
            return 0.0
        return min(self.max_kw, self.v2g_max_kw)

    def charge(self, grid_kw: float, dt: float) -> None:
        """`grid_kw` > 0 charges; < 0 discharges (V2G) at V2G_EFFICIENCY."""
        if grid_kw >= 0:
            kwh = grid_kw * CHARGING_EFFICIENCY * dt / 3600.0
        else:
            kwh = grid_kw / V2G_EFFICIENCY * dt / 3600.0
        self.delivered_kwh += kwh
        self.soc = min(1.0, max(0.0, self.soc + kwh / self.capacity_kwh))


@dataclass
class Connector:
    idx: int
    commanded_kw: float  # last limit written (what the power_limit register reads back)
    applied_kw: float  # the limit in force after the charger's reaction delay
    ev: Ev | None = None
    power_kw: float = 0.0
    target_kw: float = 0.0
    session_energy_kwh: float = 0.0  # grid side, since plug-in
    discharged_kwh: float = 0.0  # V2G, grid side, since plug-in
    pending: list[tuple[float, float]] = field(default_factory=list)  # (apply at, kW)
    phases: int = 3  # the conductors it charges on now (a phase switch changes it)
    switching: tuple[float, int] | None = None  # (takes effect at, phases): paused until then
    limit_writes: int = 0  # limits written to it (what the deadband saves: docs/testing.md)

    @property
    def state(self) -> str:
        """IEC 61851-1: A no EV, B EV connected not charging, C charging."""
        if self.ev is None:
            return "A"
        return "C" if abs(self.power_kw) > 0.01 or self.target_kw != 0 else "B"


class ChargerModel:
    def __init__(self, spec: ChargerSpec, *, comm_timeout_s: float = 30.0,
                 fallback_kw: float = 0.0) -> None:
        self.spec = spec
        self.delay_s, self.ramp_kw_s = (0.5, 100.0) if spec.kind == "dc" else (1.0, 22.0)
        self.comm_timeout_s = comm_timeout_s
        self.fallback_kw = fallback_kw
        self.last_comm_s: float | None = None
        self.timed_out = False
        self.tripped = False  # its circuit's breaker tripped: no power until the sim ends
        self.connectors = [Connector(i, spec.max_kw, spec.max_kw, phases=spec.phases)
                           for i in range(1, spec.connectors + 1)]
        self.switches: list[dict] = []  # {"t", "idx", "phases"}: each switch taking effect
        # Its limit register is in A per phase (Alfen): a switch keeps the amps, so the
        # limit in kW scales with the phases; in W (sim-charger-ac) it keeps the kW.
        self.limit_in_amps = False

    def connector(self, idx: int) -> Connector:
        if not 1 <= idx <= len(self.connectors):
            raise ValueError(f"{self.spec.id}: no connector {idx}")
        return self.connectors[idx - 1]

    def heartbeat(self, now: float) -> None:
        self.last_comm_s = now
        self.timed_out = False

    def write_limit(self, idx: int, kw: float, now: float) -> None:
        conn = self.connector(idx)
        kw = _clamp(kw, -self.spec.max_kw if self.spec.v2g else 0.0, self.spec.max_kw)
        if self.timed_out:
            # Out of its comm-timeout fallback by a write: every connector stays at most at
            # the fallback until a newly written limit takes effect (a bare heartbeat, by
            # contrast, restores the limits in force before the timeout).
            for c in self.connectors:
                c.applied_kw = min(c.applied_kw, self.fallback_kw)
        conn.commanded_kw = kw
        conn.limit_writes += 1
        conn.pending.append((now + self.delay_s, kw))
        self.heartbeat(now)

    def switch_phases(self, idx: int, phases: int, now: float, pause_s: float) -> None:
        """The phase switch register was written: pause, then charge on `phases`."""
        conn = self.connector(idx)
        phases = min(phases, self.spec.phases)
        if phases not in (1, 3) or self.spec.kind == "dc":
            return
        if conn.switching is None and phases == conn.phases:
            return
        conn.switching = (now + pause_s, phases)
        conn.power_kw = conn.target_kw = 0.0  # the charger stops the EV before switching

    @property
    def power_kw(self) -> float:
        return sum(c.power_kw for c in self.connectors)

    def phase_kw(self, conn: Connector) -> tuple[float, float, float]:
        """The connector's power per grid phase: an EV draws on the charger's first k
        conductors (k: the fewer of its and the charger's phases), mapped through the
        rotation; DC chargers draw balanced on three."""
        spec = self.spec
        k = 3 if spec.kind == "dc" else min(conn.ev.phases if conn.ev else 3, conn.phases)
        out = [0.0, 0.0, 0.0]
        for q in range(k):
            out[spec.rotation[q]] += conn.power_kw / k
        return (out[0], out[1], out[2])

    def step(self, now: float, dt: float) -> None:
        if self.last_comm_s is not None and now - self.last_comm_s >= self.comm_timeout_s:
            self.timed_out = True
        if self.tripped:
            for conn in self.connectors:
                conn.power_kw = conn.target_kw = 0.0
            return
        for conn in self.connectors:
            while conn.pending and conn.pending[0][0] <= now:
                conn.applied_kw = conn.pending.pop(0)[1]
            if conn.switching is not None and conn.switching[0] <= now:
                if self.limit_in_amps:
                    f = conn.switching[1] / conn.phases
                    conn.applied_kw *= f
                    conn.commanded_kw *= f
                    conn.pending = [(at, kw * f) for at, kw in conn.pending]
                conn.phases = conn.switching[1]
                conn.switching = None
                self.switches.append({"t": now, "idx": conn.idx, "phases": conn.phases})
            limit = self.fallback_kw if self.timed_out else conn.applied_kw
            paused = conn.ev is not None and now < conn.ev.paused_until
            conn.target_kw = (0.0 if conn.switching or (paused and limit >= 0)
                              else self._target(limit, conn.ev, conn.phases))
        total = sum(abs(c.target_kw) for c in self.connectors)
        if total > self.spec.max_kw:  # connectors share the charger's power stage
            for conn in self.connectors:
                conn.target_kw *= self.spec.max_kw / total
        for conn in self.connectors:
            ev = conn.ev
            if ev is not None and conn.target_kw >= 0 and ev.done:
                conn.power_kw = 0.0  # a full EV opens its S2 switch: no ramp down
                continue
            if conn.power_kw < 0 and (ev is None or ev.discharge_kw() <= 0):
                conn.power_kw = 0.0  # at its V2G floor the EV ends the discharge at once
            conn.power_kw = _ramp(conn.power_kw, conn.target_kw, self.ramp_kw_s, dt)
            if ev is not None and conn.power_kw != 0:
                ev.charge(conn.power_kw, dt)
                if conn.power_kw > 0:
                    conn.session_energy_kwh += conn.power_kw * dt / 3600.0
                else:
                    conn.discharged_kwh -= conn.power_kw * dt / 3600.0

    def _target(self, limit: float, ev: Ev | None, phases: int = 3) -> float:
        """What the connector heads for under `limit`: the EV's acceptance when charging,
        its V2G discharge when the limit is negative (on a bidirectional charger). On fewer
        conductors than the EV has (a charger switched to 1 phase) the EV's on-board charger
        keeps its current per phase: it takes that share of its power, 32 A at most."""
        if ev is None:
            return 0.0
        if limit >= 0 or not self.spec.v2g:
            accept = ev.accept_kw()
            if self.spec.kind != "dc" and phases < ev.phases:
                accept = min(accept * phases / ev.phases,
                             phases * MAX_PHASE_A * NOMINAL_VOLTAGE / 1000.0)
            return min(max(limit, 0.0), accept)
        return -min(-limit, ev.discharge_kw())


class BatteryModel:
    """Stationary battery with its BMS: SoC integration, derating, temperatures, alarms."""

    DERATE_BAND = 0.05  # SoC band next to min/max in which allowed power falls to zero
    RAMP_KW_S = 100.0
    AMBIENT_C = 25.0
    THERMAL_TAU_S = 600.0
    OVER_TEMP_C = 50.0

    def __init__(self, capacity_kwh: float, max_charge_kw: float, max_discharge_kw: float,
                 soc: float, min_soc: float, max_soc: float, round_trip_efficiency: float):
        self.capacity_kwh = capacity_kwh
        self.max_charge_kw = max_charge_kw
        self.max_discharge_kw = max_discharge_kw
        self.soc = soc
        self.min_soc = min_soc
        self.max_soc = max_soc
        self.one_way_efficiency = math.sqrt(round_trip_efficiency)
        self.power_kw = 0.0
        self.temp_c = self.AMBIENT_C
        self.soh = 0.98

    @property
    def allowed_discharge_kw(self) -> float:
        factor = _clamp((self.soc - self.min_soc) / self.DERATE_BAND, 0.0, 1.0)
        return self.max_discharge_kw * factor * self._thermal_factor()

    @property
    def allowed_charge_kw(self) -> float:
        factor = _clamp((self.max_soc - self.soc) / self.DERATE_BAND, 0.0, 1.0)
        return self.max_charge_kw * factor * self._thermal_factor()

    def _thermal_factor(self) -> float:
        return 0.5 if self.temp_c > self.OVER_TEMP_C - 5 else 1.0

    @property
    def temp_min_c(self) -> float:
        return self.temp_c - 2.0

    @property
    def alarms(self) -> int:
        """Bits per the sim-bms profile: 0 over-temperature, 3 over-voltage, 4 under-voltage."""
        bits = 0
        if self.temp_c > self.OVER_TEMP_C:
            bits |= 1
        if self.soc >= 0.999:
            bits |= 1 << 3
        if self.soc <= 0.001:
            bits |= 1 << 4
        return bits

    @property
    def voltage(self) -> float:
        return 700.0 + 120.0 * self.soc

    @property
    def cell_v_min(self) -> float:
        return 3.0 + 1.1 * self.soc - 0.01

    @property
    def cell_v_max(self) -> float:
        return 3.0 + 1.1 * self.soc + 0.01

    def step(self, setpoint_kw: float, dt: float) -> None:
        target = _clamp(setpoint_kw, -self.allowed_charge_kw, self.allowed_discharge_kw)
        self.power_kw = _ramp(self.power_kw, target, self.RAMP_KW_S, dt)
        if self.power_kw > 0:
            kwh = self.power_kw * dt / 3600.0 / self.one_way_efficiency
        else:
            kwh = self.power_kw * dt / 3600.0 * self.one_way_efficiency
        self.soc = _clamp(self.soc - kwh / self.capacity_kwh, 0.0, 1.0)
        # First-order heating: 20 K above ambient at full power, time constant THERMAL_TAU_S.
        full = max(self.max_charge_kw, self.max_discharge_kw, 1e-9)
        steady = self.AMBIENT_C + 20.0 * abs(self.power_kw) / full
        self.temp_c += (steady - self.temp_c) * min(1.0, dt / self.THERMAL_TAU_S)


@dataclass
class MeterReading:
    power_kw: tuple[float, float, float] = (0.0, 0.0, 0.0)
    voltage: tuple[float, float, float] = (NOMINAL_VOLTAGE,) * 3
    current: tuple[float, float, float] = (0.0, 0.0, 0.0)
    frequency: float = 50.0
    import_kwh: float = 0.0
    export_kwh: float = 0.0

    @property
    def total_kw(self) -> float:
        return sum(self.power_kw)


class StationModel:
    """The whole station, advanced in simulated seconds (`t`, from the start)."""

    def __init__(self, spec: StationSpec, *, seed: int = 0, random_evs_per_hour: float = 0.0,
                 start: datetime | None = None) -> None:
        self.spec = spec
        self.t = 0.0
        self.start = start or spec.start or datetime.now(UTC)
        self.rng = random.Random(seed)
        self.chargers = {c.id: ChargerModel(c) for c in spec.chargers}
        b = spec.battery
        self.battery = BatteryModel(b.capacity_kwh, b.max_charge_kw, b.max_discharge_kw, b.soc,
                                    b.min_soc, b.max_soc, b.round_trip_efficiency) if b else None
        self.has_inverter = b is not None or spec.pv_peak_kw > 0 or any(spec.pv_series_kw)
        self.battery_setpoint_kw = 0.0
        self.inverter_status = "running"
        self.base_load_override: float | None = None
        self.pv_override: float | None = None
        self.meter = MeterReading()
        self.history: deque[tuple[float, float]] = deque(maxlen=HISTORY_LEN)
        self._last_history_t = -math.inf
        self._scripted = list(spec.evs)
        self._random_rate = random_evs_per_hour / 3600.0
        self._next_random_s = self._draw_next_arrival(0.0)
        # The electrical tree: each circuit's breaker and (metered or not) its reading.
        self.breakers = {c.id: Breaker(c.max_current_a) for c in spec.circuits}
        self.circuit_meters = {c.id: MeterReading() for c in spec.circuits}
        self.trips: list[dict] = []  # {"t", "circuit", "currents"}: the TRIP log
        self._below = {c.id: self._chargers_below(c.id) for c in spec.circuits}
        self._update_meter(0.0)

    # ---- inputs from the outside world -------------------------------------------------
    @property
    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.t)

    def _slot_value(self, series: tuple[float, ...]) -> float | None:
        if not series:
            return None
        i = int(self.t // self.spec.slot_s)
        return series[i % len(series)]  # a day file replays itself past its end

    @property
    def base_load_kw(self) -> float:
        if self.base_load_override is not None:
            return self.base_load_override
        value = self._slot_value(self.spec.base_series_kw)
        return value if value is not None else 0.1 * self.spec.grid_capacity_kw

    @property
    def pv_kw(self) -> float:
        if self.pv_override is not None:
            return self.pv_override
        value = self._slot_value(self.spec.pv_series_kw)
        if value is not None:
            return value
        return self.spec.pv_peak_kw * clear_sky_fraction(self.now)

    def plug(self, charger_id: str, idx: int, ev: Ev) -> None:
        conn = self._charger(charger_id).connector(idx)
        if conn.ev is not None:
            raise ValueError(f"{charger_id}/{idx}: connector already occupied")
        conn.ev = ev
        conn.session_energy_kwh = conn.discharged_kwh = 0.0

    def unplug(self, charger_id: str, idx: int) -> Ev | None:
        conn = self._charger(charger_id).connector(idx)
        ev, conn.ev = conn.ev, None
        conn.power_kw = conn.target_kw = 0.0  # the contactor opens at once
        return ev

    def _charger(self, charger_id: str) -> ChargerModel:
        try:
            return self.chargers[charger_id]
        except KeyError:
            raise ValueError(f"unknown charger {charger_id!r}") from None

    # ---- time ----------------------------------------------------------------------------
    def advance(self, seconds: float, max_substep: float = MAX_SUBSTEP_S) -> None:
        end = self.t + seconds
        while self.t < end - 1e-12:
            dt = min(max_substep, end - self.t)
            self.t += dt
            self._step(dt)

    def _step(self, dt: float) -> None:
        self._arrivals_and_departures()
        for charger in self.chargers.values():
            charger.step(self.t, dt)
        if self.battery is not None:
            self.battery.step(self.battery_setpoint_kw, dt)
        self._update_meter(dt)
        if self.t - self._last_history_t >= HISTORY_PERIOD_S - 1e-9:
            self.history.append((self.t, self.meter.total_kw))
            self._last_history_t = self.t

    def settle(self) -> None:
        """Recompute the meter after an outside change (set, plug), without time passing."""
        self._update_meter(0.0)

    @property
    def battery_kw(self) -> float:
        return self.battery.power_kw if self.battery else 0.0

    def _chargers_below(self, circuit_id: str) -> tuple[list[ChargerModel], float]:
        """The chargers wired to the circuit or below it, and the base load on them (kW)."""
        by_id = {c.id: c for c in self.spec.circuits}

        def under(at: str | None) -> bool:
            seen: set[str] = set()
            while at is not None and at not in seen:
                if at == circuit_id:
                    return True
                seen.add(at)
                at = by_id[at].parent
            return False

        chargers = [m for m in self.chargers.values() if under(m.spec.circuit)]
        base = sum(c.base_load_kw for c in self.spec.circuits if under(c.id))
        return chargers, base

    def _phase_kw(self, chargers: list[ChargerModel], base_kw: float) -> list[float]:
        phases = [base_kw * share for share in BASE_LOAD_PHASE_SHARE]
        for ch in chargers:
            for conn in ch.connectors:
                for p, kw in enumerate(ch.phase_kw(conn)):
                    phases[p] += kw
        return phases

    def _update_circuits(self, dt: float) -> None:
        for c in self.spec.circuits:
            chargers, base = self._below[c.id]
            phases = self._phase_kw(chargers, base)
            amps = tuple(abs(p) * 1000.0 / NOMINAL_VOLTAGE for p in phases)
            total = sum(phases)
            m = self.circuit_meters[c.id]
            self.circuit_meters[c.id] = MeterReading(
                tuple(phases), (NOMINAL_VOLTAGE,) * 3, amps, 50.0,  # type: ignore[arg-type]
                m.import_kwh + max(total, 0.0) * dt / 3600.0,
                m.export_kwh + max(-total, 0.0) * dt / 3600.0,
            )
            if dt > 0 and self.breakers[c.id].step(self.t, amps, dt):  # type: ignore[arg-type]
                self.trips.append({"t": self.t, "circuit": c.id, "currents": list(amps)})
                log.warning("TRIP: circuit %s breaker (%g A) tripped at t=%.1f s, phases %s A",
                            c.id, c.max_current_a, self.t, [round(a, 1) for a in amps])
                for ch in chargers:
                    ch.tripped = True

    def _update_meter(self, dt: float) -> None:
        self._update_circuits(dt)
        circuit_base = sum(c.base_load_kw for c in self.spec.circuits)
        ev = self._phase_kw(list(self.chargers.values()), 0.0)
        other = (self.pv_kw + self.battery_kw) / 3.0
        phases = tuple((self.base_load_kw + circuit_base) * share + ev[p] - other
                       for p, share in enumerate(BASE_LOAD_PHASE_SHARE))
        # A stiff grid: the voltage sags by about 1 V per 10 kW imported on a phase.
        volts = tuple(NOMINAL_VOLTAGE - 0.1 * p for p in phases)
        amps = tuple(abs(p) * 1000.0 / v for p, v in zip(phases, volts, strict=True))
        total = sum(phases)
        m = self.meter
        self.meter = MeterReading(
            phases, volts, amps, 50.0,  # type: ignore[arg-type]
            m.import_kwh + max(total, 0.0) * dt / 3600.0,
            m.export_kwh + max(-total, 0.0) * dt / 3600.0,
        )

    def _arrivals_and_departures(self) -> None:
        while self._scripted and self._scripted[0].arrival_s <= self.t:
            a = self._scripted.pop(0)
            conn = self.chargers[a.charger_id].connector(a.idx)
            if conn.ev is None:  # a late leaver keeps the connector; the newcomer goes away
                self.plug(a.charger_id, a.idx, Ev(a.max_kw, a.capacity_kwh, a.soc,
                                                  a.energy_needed_kwh, a.v2g, a.session_id,
                                                  a.departure_s, v2g_min_soc=a.v2g_min_soc,
                                                  v2g_max_kw=a.v2g_max_kw, phases=a.phases))
        for charger in self.chargers.values():
            for conn in charger.connectors:
                if conn.ev and conn.ev.departure_s is not None and conn.ev.departure_s <= self.t:
                    self.unplug(charger.spec.id, conn.idx)
        if self.t >= self._next_random_s:
            self._random_arrival()
            self._next_random_s = self._draw_next_arrival(self.t)

    def _draw_next_arrival(self, now: float) -> float:
        return now + self.rng.expovariate(self._random_rate) if self._random_rate > 0 else math.inf

    def _random_arrival(self) -> None:
        free = [(c, k) for c in self.chargers.values() for k in c.connectors if k.ev is None]
        if not free:
            return
        charger, conn = self.rng.choice(free)
        capacity = self.rng.choice([40.0, 60.0, 77.0, 100.0])
        soc = self.rng.uniform(0.1, 0.6)
        max_kw = self.rng.choice([11.0, 22.0]) if charger.spec.kind == "ac" else \
            self.rng.choice([50.0, 100.0, 150.0, 250.0])
        ev = Ev(max_kw, capacity, soc, (0.9 - soc) * capacity,
                session_id=f"R{int(self.t)}", departure_s=self.t + self.rng.uniform(1200, 7200))
        self.plug(charger.spec.id, conn.idx, ev)

    # ---- truth for tests -----------------------------------------------------------------
    def overload_episodes(self, tolerance: float = 0.02) -> list[tuple[float, float, float]]:
        """(start s, duration s, peak kW) of each stretch of the history above
        gridCapacity * (1 + tolerance)."""
        limit = self.spec.grid_capacity_kw * (1.0 + tolerance)
        episodes: list[tuple[float, float, float]] = []
        start: float | None = None
        peak = 0.0
        last_t = 0.0
        for t, kw in self.history:
            if kw > limit:
                if start is None:
                    start, peak = t, kw
                peak = max(peak, kw)
            elif start is not None:
                episodes.append((start, t - start, peak))
                start = None
            last_t = t
        if start is not None:
            episodes.append((start, last_t - start, peak))
        return episodes


def clear_sky_fraction(when: datetime) -> float:
    """A clear-sky PV shape: 0 at night, a sine between 06:00 and 18:00 UTC, 1 at noon."""
    hours = when.hour + when.minute / 60.0 + when.second / 3600.0
    if not 6.0 <= hours <= 18.0:
        return 0.0
    return math.sin(math.pi * (hours - 6.0) / 12.0) ** 1.2
