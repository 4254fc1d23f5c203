"""Simulated OCPP charge points (1.6J and 2.0.1, built with the `ocpp` library) on the
simulator's station physics: the charger's connectors are the station model's, so the grid
meter (and `Simulator.overload_episodes`) sees what they draw.

    cp = SimChargePoint(sim, "CP1", "ws://127.0.0.1:8887/ocpp/CP1", version="1.6")
    await cp.start(); await cp.plug(1, max_kw=80, ...); cp.fault("drop", seconds=10)

Every TICK_S the composite schedule (ocpp_schedule) is written into the physics as the
connector's limit, which the EV follows with the charger's delay and ramp. Profiles are
evaluated on the wall clock, as a real charger's clock (synchronised by BootNotification)
would: so an agent that goes silent leaves the charger on its max profile's fallback.

Phase switching (`phase_switch_pause_s`, an AC charger): a connector profile whose period
carries a numberPhases other than the connector's count in effect switches it as the Modbus
sim charger's `charge_phases` register does (physics `switch_phases`: charging stops for the
pause, then a 3-phase EV draws on the first conductor only). 2.0.1 reports it in its device
model (SmartChargingCtrlr.Phases3to1, EVSE ACPhaseSwitchingSupported); meter values carry
Current.Import per conductor. `reject-phases` refuses any profile that would switch.

Faults: `drop` (connection closed, refused for `seconds`; the charger keeps running on its
profiles and queues transaction messages), `reject` (SetChargingProfile answered Rejected),
`late` (each answer to the agent delayed by `seconds`), `reboot` (transactions and
TxProfiles lost, BootNotification again; persistent profiles kept, as OCPP requires).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.client import connect

from .ocpp_schedule import ProfileStore, from_payload

log = logging.getLogger("hardware_sim.ocpp")

TICK_S = 0.1
STOP_TIMEOUT_S = 10.0  # stop(): how long its tasks may take to end after their cancel


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Tx:
    id: str
    started_wall: float
    started_sim: float
    first_profile_sim: float | None = None


class SimChargePoint:
    def __init__(self, sim: Any, charger_id: str, url: str, *, version: str = "1.6",
                 rate_units: str | None = None, password: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, voltage: float = 230.0,
                 phase_switch_pause_s: float | None = None, triggers: bool = True) -> None:
        if version not in ("1.6", "2.0.1"):
            raise ValueError(f"version: {version!r} is not 1.6 or 2.0.1")
        self.sim = sim
        self.id = charger_id
        self.url = url
        self.version = version
        self.model = sim.model.chargers[charger_id]
        spec = self.model.spec
        # DC chargers take W, AC chargers A (what most real ones report).
        default = ("Power" if spec.kind == "dc" else "Current") if version == "1.6" else (
            "W" if spec.kind == "dc" else "A")
        self.rate_units = rate_units or default
        self.password = password
        self.ssl = ssl_context
        self.store = ProfileStore(spec.max_kw, voltage)
        # Switches phases on a profile's numberPhases (simulated s of pause); None: it cannot.
        self.phase_switch_pause_s = phase_switch_pause_s if spec.kind != "dc" else None
        self.tx: dict[int, _Tx | None] = {i: None for i in range(1, spec.connectors + 1)}
        self.register_wh = {i: 0.0 for i in self.tx}
        self.meter_interval_s = 10.0
        # Answers TriggerMessage "MeterValues" with a meter value at once (False: refuses it,
        # as a charger without OCPP 1.6's RemoteTrigger profile does).
        self.triggers = triggers
        self.triggered = 0  # meter values sent on a trigger, for the tests
        self.cp: Any = None
        self.connected = asyncio.Event()
        self.boots = 0
        self.faults: dict[str, float] = {}
        self._offline_until = 0.0
        self._need_boot = True
        self._outbox: list[tuple[Any, _Tx | None]] = []  # transaction messages queued while offline, in order
        self._status_sent: dict[int, str] = {}
        self._last_meter = 0.0
        self._applied: dict[int, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._ws: Any = None
        self._seq = 0
        self.completed: list[_Tx] = []  # ended transactions, for the tests' timing checks
        # Every OCPP-J frame as it crossed this charger's socket, both ways: what the tests
        # check a relay against (the charger's side, not the agent's own log).
        self.sent: list[str] = []
        self.received: list[str] = []

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._connect_loop()), loop.create_task(self._tick_loop())]

    def spawn(self, coro: Any) -> None:
        """A short task (a triggered meter value) that `stop` cancels with the others; done
        ones are dropped as new ones come."""
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.get_running_loop().create_task(coro))

    async def stop(self) -> None:
        """Cancel the connection and tick tasks until they have ended (bounded).

        One cancel is not always enough on Python 3.11: the `ocpp` library waits for an
        answer with `asyncio.wait_for`, which returns the answer instead of raising when the
        cancel lands after the answer arrived but before the waiting task resumed (CPython
        gh-86296, fixed in 3.12). The tick task then ran on, and awaiting it never returned
        (the OCPP lag test's 300 s timeout; docs/testing.md, "In parallel")."""
        tasks = [task for task in self._tasks if not task.done()]
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while tasks:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=1.0)
            tasks = [task for task in tasks if not task.done()]
            if tasks and time.monotonic() > deadline:
                raise RuntimeError(f"{self.id}: {len(tasks)} task(s) still running "
                                   f"{STOP_TIMEOUT_S:g} s after stop(): {tasks}")
        for task in self._tasks:  # collected, so none is reported as never retrieved
            if not task.cancelled():
                task.exception()
        self._tasks = []
        if self._ws is not None:
            await self._ws.close()

    async def _connect_loop(self) -> None:
        sub = "ocpp1.6" if self.version == "1.6" else "ocpp2.0.1"
        headers = {}
        if self.password is not None:
            token = base64.b64encode(f"{self.id}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        while True:
            wait = self._offline_until - time.time()
            if wait > 0:
                await asyncio.sleep(min(wait, 0.5))
                continue
            try:
                async with connect(self.url, subprotocols=[sub], additional_headers=headers,  # type: ignore[list-item]
                                   ssl=self.ssl, open_timeout=5) as ws:
                    self._ws = ws
                    cls = _Cp16 if self.version == "1.6" else _Cp201
                    self.cp = cls(self.id, ws, self)
                    reader = asyncio.get_running_loop().create_task(self.cp.start())
                    try:
                        await self._online()
                        await reader
                    finally:
                        reader.cancel()
                        self.cp = None
                        self.connected.clear()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("%s: connection: %s", self.id, exc)
            await asyncio.sleep(0.2)

    async def _online(self) -> None:
        if self._need_boot:
            await self._call(self._boot_payload())
            self._need_boot = False
            self.boots += 1
        self._status_sent.clear()
        while self._outbox:  # offline transaction messages, oldest first
            payload, tx = self._outbox[0]
            answer = await self._call(payload)
            self._outbox.pop(0)
            if tx is not None and answer is not None:
                tx.id = str(answer.transaction_id)
        self.connected.set()
        for idx, tx in self.tx.items():
            ev = self.model.connector(idx).ev
            if ev is not None and tx is None:
                await self._start_tx(idx)

    def _boot_payload(self) -> Any:
        if self.version == "1.6":
            return call16.BootNotification(charge_point_vendor="sems-sim",
                                           charge_point_model=f"sim-{self.model.spec.kind}")
        return call201.BootNotification(
            charging_station={"vendor_name": "sems-sim", "model": f"sim-{self.model.spec.kind}"},
            reason="PowerUp")

    async def _call(self, payload: Any) -> Any:
        if self.cp is None:
            raise ConnectionError("offline")
        return await self.cp.call(payload)

    # ---- EVs ------------------------------------------------------------------------------
    async def plug(self, idx: int, *, max_kw: float, capacity_kwh: float = 80.0,
                   soc: float = 0.2, energy_needed_kwh: float = 60.0, id_tag: str = "TAG1",
                   phases: int = 3) -> None:
        self.sim.plug(self.id, idx, max_kw=max_kw, capacity_kwh=capacity_kwh, soc=soc,
                      energy_needed_kwh=energy_needed_kwh, phases=phases)
        self._id_tag = id_tag
        await self._start_tx(idx)

    async def unplug(self, idx: int) -> None:
        conn = self.model.connector(idx)
        self.register_wh[idx] += conn.session_energy_kwh * 1000.0
        self.sim.unplug(self.id, idx)
        tx = self.tx[idx]
        self.tx[idx] = None
        if tx is None:
            return
        if tx.id == "pending":  # its start never reached the CSMS: drop it, send no stop
            self._outbox = [(p, t) for p, t in self._outbox if t is not tx]
            return
        self.store.drop_transaction_profiles(tx.id)
        self.completed.append(tx)
        if self.version == "1.6":
            payload: Any = call16.StopTransaction(
                meter_stop=int(self.register_wh[idx]), timestamp=_now_iso(),
                transaction_id=int(tx.id), reason="EVDisconnected")
        else:
            payload = self._tx_event("Ended", "EVCommunicationLost", idx, tx, "Idle")
        await self._send_tx_message(payload)

    async def _start_tx(self, idx: int) -> None:
        now = time.time()
        if self.version == "1.6":
            payload: Any = call16.StartTransaction(
                connector_id=idx, id_tag=getattr(self, "_id_tag", "TAG1"),
                meter_start=int(self.register_wh[idx]), timestamp=_now_iso())
            tx = _Tx("pending", now, self.sim.model.t)
            self.tx[idx] = tx
            answer = await self._send_tx_message(payload, tx)
            if answer is not None:
                tx.id = str(answer.transaction_id)
            return
        tx = _Tx(str(uuid.uuid4()), now, self.sim.model.t)
        self.tx[idx] = tx
        await self._send_tx_message(self._tx_event("Started", "CablePluggedIn", idx, tx,
                                                   "EVConnected", token=True))
        ev = self.model.connector(idx).ev
        if ev is not None and self.cp is not None:
            with contextlib.suppress(Exception):
                await self._call(call201.NotifyEVChargingNeeds(
                    evse_id=idx, charging_needs={"requested_energy_transfer": "DC",
                                                 "dc_charging_parameters": {
                                                     "ev_max_current": 400,
                                                     "ev_max_voltage": 800,
                                                     "ev_max_power": int(ev.max_kw * 1000)}}))

    def _tx_event(self, event: str, reason: str, idx: int, tx: _Tx, state: str, *,
                  token: bool = False, meter: bool = True) -> Any:
        self._seq += 1
        kw: dict[str, Any] = {}
        if token:
            kw["id_token"] = {"id_token": getattr(self, "_id_tag", "TAG1"), "type": "ISO14443"}
        if meter:
            kw["meter_value"] = [self._meter_value(idx)]
        return call201.TransactionEvent(
            event_type=event, timestamp=_now_iso(), trigger_reason=reason, seq_no=self._seq,
            transaction_info={"transaction_id": tx.id, "charging_state": state},
            evse={"id": idx, "connector_id": 1}, **kw)

    async def _send_tx_message(self, payload: Any, tx: _Tx | None = None) -> Any:
        """Transaction messages are never lost: sent now, or queued while offline (`tx`:
        the transaction a queued 1.6 StartTransaction will get its id for)."""
        if self.cp is not None and self.connected.is_set():
            try:
                return await self._call(payload)
            except Exception as exc:
                log.debug("%s: %s queued: %s", self.id, type(payload).__name__, exc)
        self._outbox.append((payload, tx))
        return None

    # ---- physics and reports --------------------------------------------------------------
    def limits_kw(self, now: float | None = None) -> dict[int, float]:
        """What the composite schedule lets each connector draw now (max profile shared)."""
        now = time.time() if now is None else now
        own = {}
        for idx, tx in self.tx.items():
            tx_id = tx.id if tx is not None else None
            own[idx] = self.store.connector_kw(idx, tx_id, tx.started_wall if tx else None, now)
        cap = self.store.max_kw(now)
        wants = {i: min(kw, self._accept(i)) for i, kw in own.items()}
        total = sum(wants.values())
        if total > cap > 0:
            return {i: wants[i] * cap / total for i in own}
        if cap <= 0:
            return dict.fromkeys(own, 0.0)
        # Each connector within the charger-wide limit too (its composite), also while no
        # EV asks for power: the physics holds this limit until the next tick, so an EV
        # plugged in meanwhile would draw it.
        return {i: min(kw, cap) for i, kw in own.items()}

    def _accept(self, idx: int) -> float:
        ev = self.model.connector(idx).ev
        return ev.accept_kw() if ev is not None else 0.0

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: tick failed", self.id)

    async def _tick(self) -> None:
        t = self.sim.model.t
        for idx, kw in self.limits_kw().items():
            if abs(self._applied.get(idx, -1.0) - kw) > 1e-6:
                self.model.write_limit(idx, kw, t)
                self._applied[idx] = kw
        self.model.heartbeat(t)  # the physics' Modbus comm timer plays no part here
        if self.cp is None or not self.connected.is_set():
            return
        for idx in self.tx:
            status = self._status(idx)
            if self._status_sent.get(idx) != status:
                self._status_sent[idx] = status
                with contextlib.suppress(Exception):
                    await self._call(self._status_payload(idx, status))
        if time.time() - self._last_meter >= self.meter_interval_s:
            self._last_meter = time.time()
            for idx in self.tx:
                await self.send_meter(idx, "MeterValuePeriodic")

    async def send_meter(self, idx: int, reason: str) -> None:
        """A meter value of connector `idx` in its transaction (none without one)."""
        tx = self.tx.get(idx)
        if tx is None or tx.id == "pending" or self.cp is None:
            return
        with contextlib.suppress(Exception):
            if self.version == "1.6":
                await self._call(call16.MeterValues(
                    connector_id=idx, transaction_id=int(tx.id),
                    meter_value=[self._meter_value(idx)]))
            elif reason == "Trigger":  # 2.0.1 F06: a triggered "MeterValues" is a MeterValuesRequest
                await self._call(call201.MeterValues(evse_id=idx,
                                                     meter_value=[self._meter_value(idx)]))
            else:
                await self._call(self._tx_event("Updated", reason, idx, tx,
                                                self._charging_state(idx)))

    async def triggered_meters(self, idx: int | None) -> None:
        """After accepting TriggerMessage "MeterValues": connector `idx`'s (all: None)."""
        for i in [idx] if idx is not None else list(self.tx):
            self.triggered += 1
            await self.send_meter(i, "Trigger")

    def _status(self, idx: int) -> str:
        conn = self.model.connector(idx)
        if conn.ev is None:
            return "Available"
        if self.version == "2.0.1":
            return "Occupied"
        if conn.power_kw > 0.01:
            return "Charging"
        return "SuspendedEV" if conn.ev.done else "SuspendedEVSE"

    def _charging_state(self, idx: int) -> str:
        conn = self.model.connector(idx)
        if conn.power_kw > 0.01:
            return "Charging"
        return "SuspendedEV" if conn.ev is not None and conn.ev.done else "SuspendedEVSE"

    def _status_payload(self, idx: int, status: str) -> Any:
        if self.version == "1.6":
            return call16.StatusNotification(connector_id=idx, error_code="NoError",
                                             status=status, timestamp=_now_iso())
        return call201.StatusNotification(timestamp=_now_iso(), connector_status=status,
                                          evse_id=idx, connector_id=1)

    def _meter_value(self, idx: int) -> dict:
        conn = self.model.connector(idx)
        energy = self.register_wh[idx] + conn.session_energy_kwh * 1000.0
        values: list[dict[str, Any]] = [
            {"measurand": "Power.Active.Import", "value": round(conn.power_kw * 1000.0, 1)},
            {"measurand": "Energy.Active.Import.Register", "value": round(energy, 1)},
        ]
        units = ["W", "Wh"]
        if conn.ev is not None:
            values.append({"measurand": "SoC", "value": round(conn.ev.soc * 100.0, 1)})
            units.append("Percent")
        if self.phase_switch_pause_s is not None:  # per conductor, before the rotation
            grid = self.model.phase_kw(conn)
            for q, p in enumerate(self.model.spec.rotation):
                values.append({"measurand": "Current.Import", "phase": f"L{q + 1}",
                               "value": round(abs(grid[p]) * 1000.0 / self.store.voltage, 1)})
                units.append("A")
        if self.version == "1.6":
            values = [{**v, "value": str(v["value"]), "unit": u} for v, u in zip(values, units, strict=True)]
        else:
            values = [{**v, "unit_of_measure": {"unit": u}} for v, u in zip(values, units, strict=True)]
        return {"timestamp": _now_iso(), "sampled_value": values}

    # ---- what the agent sends -------------------------------------------------------------
    async def answer_delay(self) -> None:
        if self.faults.get("late"):
            await asyncio.sleep(self.faults["late"])

    def accept_profile(self, connector: int, payload: dict) -> str:
        if self.faults.get("reject"):
            return "Rejected"
        try:
            profile = from_payload(connector, payload, time.time())
        except (KeyError, TypeError, ValueError):
            return "Rejected"
        if profile.is_max and connector != 0:
            return "Rejected"
        if self.faults.get("reject-tx") and not profile.is_max:
            return "Rejected"  # a charger that takes only its charger-wide max profile
        phases = self._phases_asked(connector, profile)
        if phases is not None and self.faults.get("reject-phases"):
            return "Rejected"
        if profile.purpose == "TxProfile":
            tx = self.tx.get(connector)
            if tx is None or tx.id != profile.transaction:
                return "Rejected"  # no such transaction on this connector (1.6 3.13.4)
            if tx.first_profile_sim is None:
                tx.first_profile_sim = self.sim.model.t
        self.store.set(profile)
        if phases is not None and self.phase_switch_pause_s is not None:
            self.model.switch_phases(connector, phases, self.sim.model.t,
                                     self.phase_switch_pause_s)
        return "Accepted"

    def _phases_asked(self, connector: int, profile: Any) -> int | None:
        """The count a connector profile switches to: its first period's numberPhases where
        that differs from the count in effect (or the one a switch under way goes to)."""
        if profile.is_max or connector == 0 or not profile.periods:
            return None
        asked = profile.periods[0][2]
        conn = self.model.connector(connector)
        now = conn.switching[1] if conn.switching is not None else conn.phases
        return asked if asked in (1, 3) and asked != now else None

    def variable(self, component: str, name: str) -> str | None:
        """2.0.1 device model variables it knows (per-EVSE ones alike on every EVSE)."""
        switches = "true" if self.phase_switch_pause_s is not None else "false"
        return {("SmartChargingCtrlr", "RateUnit"): self.rate_units,
                ("SmartChargingCtrlr", "Phases3to1"): switches,
                ("EVSE", "ACPhaseSwitchingSupported"): switches}.get((component, name))

    def composite(self, connector: int, duration: float, unit: str | None) -> dict:
        now = time.time()
        periods: list[dict[str, Any]] = []
        for offset in self.store.change_points(now, duration):
            at = now + offset
            kw = self.store.max_kw(at) if connector == 0 else min(
                self.limits_kw(at).get(connector, 0.0), self.store.max_kw(at))
            limit = kw * 1000.0 if (unit or "W") == "W" else kw * 1000.0 / (3 * self.store.voltage)
            limit = round(limit, 1)
            if not periods or periods[-1]["limit"] != limit:
                periods.append({"start_period": int(offset), "limit": limit})
        return {"unit": unit or "W", "periods": periods, "start": _now_iso()}

    # ---- faults ---------------------------------------------------------------------------
    def fault(self, kind: str, seconds: float = 5.0, on: bool = True) -> None:
        """drop (for `seconds`), reject (on/off), reject-tx (on/off: connector profiles
        only, the max profile accepted), reject-phases (on/off: profiles that would switch
        phases), late (answers `seconds` late; 0 off), reboot."""
        if kind == "drop":
            self._offline_until = time.time() + seconds
            self._close()
        elif kind in ("reject", "reject-tx", "reject-phases"):
            self.faults[kind] = 1.0 if on else 0.0
        elif kind == "late":
            self.faults["late"] = seconds
        elif kind == "reboot":
            for idx, tx in self.tx.items():
                if tx is not None:
                    self.completed.append(tx)
                self.tx[idx] = None
            self.store.drop_transaction_profiles()
            self._outbox.clear()
            self._need_boot = True
            self._close()
        else:
            raise ValueError(f"fault: {kind!r} is not drop, reject, reject-tx, reject-phases, "
                             "late or reboot")

    def _close(self) -> None:
        self.connected.clear()
        if self._ws is not None:
            asyncio.get_running_loop().create_task(self._ws.close())


class _Wire:
    """Records the frames on the socket (SimChargePoint.sent / .received)."""

    sim_cp: SimChargePoint

    async def route_message(self, raw_msg: str) -> None:
        self.sim_cp.received.append(raw_msg)
        await super().route_message(raw_msg)  # type: ignore[misc]

    async def _send(self, message: str) -> None:
        self.sim_cp.sent.append(message)
        await super()._send(message)  # type: ignore[misc]


class _Cp16(_Wire, Cp16):
    def __init__(self, cp_id: str, ws: Any, sim_cp: SimChargePoint) -> None:
        super().__init__(cp_id, ws, response_timeout=10)
        self.sim_cp = sim_cp

    @on("SetChargingProfile")
    async def on_set_profile(self, connector_id: int, cs_charging_profiles: dict):
        await self.sim_cp.answer_delay()
        return result16.SetChargingProfile(
            status=self.sim_cp.accept_profile(connector_id, cs_charging_profiles))

    @on("GetCompositeSchedule")
    async def on_composite(self, connector_id: int, duration: int, charging_rate_unit=None):
        await self.sim_cp.answer_delay()
        unit = charging_rate_unit or ("W" if "Power" in self.sim_cp.rate_units else "A")
        c = self.sim_cp.composite(connector_id, duration, unit)
        return result16.GetCompositeSchedule(
            status="Accepted", connector_id=connector_id, schedule_start=c["start"],
            charging_schedule={"charging_rate_unit": unit, "duration": duration,
                               "charging_schedule_period": c["periods"]})

    @on("GetConfiguration")
    def on_get_configuration(self, key: list | None = None):
        known = {"ChargingScheduleAllowedChargingRateUnit": self.sim_cp.rate_units,
                 "MeterValueSampleInterval": str(int(self.sim_cp.meter_interval_s))}
        wanted = key or list(known)
        return result16.GetConfiguration(
            configuration_key=[{"key": k, "readonly": False, "value": known[k]}
                               for k in wanted if k in known],
            unknown_key=[k for k in wanted if k not in known] or None)

    @on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str):
        if key == "MeterValueSampleInterval":
            self.sim_cp.meter_interval_s = max(1.0, float(value))
            return result16.ChangeConfiguration(status="Accepted")
        return result16.ChangeConfiguration(status="NotSupported")

    @on("ClearChargingProfile")
    def on_clear(self, **_: Any):
        return result16.ClearChargingProfile(status="Unknown")

    @on("TriggerMessage")
    def on_trigger(self, requested_message: str, connector_id: int | None = None):
        ok = self.sim_cp.triggers and requested_message == "MeterValues"
        return result16.TriggerMessage(status="Accepted" if ok else "NotImplemented")

    @after("TriggerMessage")
    async def after_trigger(self, requested_message: str, connector_id: int | None = None):
        if self.sim_cp.triggers and requested_message == "MeterValues":
            self.sim_cp.spawn(self.sim_cp.triggered_meters(connector_id))


class _Cp201(_Wire, Cp201):
    def __init__(self, cp_id: str, ws: Any, sim_cp: SimChargePoint) -> None:
        super().__init__(cp_id, ws, response_timeout=10)
        self.sim_cp = sim_cp

    @on("SetChargingProfile")
    async def on_set_profile(self, evse_id: int, charging_profile: dict, **_: Any):
        await self.sim_cp.answer_delay()
        return result201.SetChargingProfile(
            status=self.sim_cp.accept_profile(evse_id, charging_profile))

    @on("GetCompositeSchedule")
    async def on_composite(self, duration: int, evse_id: int, charging_rate_unit=None, **_: Any):
        await self.sim_cp.answer_delay()
        unit = charging_rate_unit or ("W" if "W" in self.sim_cp.rate_units else "A")
        c = self.sim_cp.composite(evse_id, duration, unit)
        return result201.GetCompositeSchedule(status="Accepted", schedule={
            "evse_id": evse_id, "duration": duration, "schedule_start": c["start"],
            "charging_rate_unit": unit, "charging_schedule_period": c["periods"]})

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list, **_: Any):
        out = []
        for item in get_variable_data:
            comp, var = item["component"]["name"], item["variable"]["name"]
            value = self.sim_cp.variable(comp, var)
            if value is not None:
                out.append({"attribute_status": "Accepted", "attribute_value": value,
                            "component": item["component"], "variable": item["variable"]})
            else:
                out.append({"attribute_status": "UnknownVariable",
                            "component": item["component"], "variable": item["variable"]})
        return result201.GetVariables(get_variable_result=out)

    @on("TriggerMessage")
    def on_trigger(self, requested_message: str, evse: dict | None = None, **_: Any):
        ok = self.sim_cp.triggers and requested_message == "MeterValues"
        return result201.TriggerMessage(status="Accepted" if ok else "NotImplemented")

    @after("TriggerMessage")
    async def after_trigger(self, requested_message: str, evse: dict | None = None, **_: Any):
        if self.sim_cp.triggers and requested_message == "MeterValues":
            self.sim_cp.spawn(self.sim_cp.triggered_meters(evse["id"] if evse else None))

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list, **_: Any):
        out = []
        for item in set_variable_data:
            comp, var = item["component"]["name"], item["variable"]["name"]
            ok = (comp, var) == ("SampledDataCtrlr", "TxUpdatedInterval")
            if ok:
                self.sim_cp.meter_interval_s = max(1.0, float(item["attribute_value"]))
            out.append({"attribute_status": "Accepted" if ok else "UnknownVariable",
                        "component": item["component"], "variable": item["variable"]})
        return result201.SetVariables(set_variable_result=out)
