"""A station of OCPP charge points for the tests: the simulator (physics, grid meter over
Modbus TCP), the agent's central system on a free loopback port, simulated charge points
connected to it, and the agent's real control loop in between."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from hardware_sim.ocpp_chargepoint import SimChargePoint
from hardware_sim.simulator import Simulator
from sim_agent import agent_config

from agent.config.ocpp import OcppChargerConfig, OcppSettings
from agent.config.settings import AgentSettings
from agent.control.devices import DeviceStatus, StationDevices
from agent.control.loop import Controller, ControlLoop
from agent.control.sessions import SessionTracker
from agent.control.stats import CycleStats
from agent.model.clock import RealClock
from agent.ocpp.charger import OcppCharger
from agent.ocpp.server import CentralSystem
from agent.ocpp.wiring import swap_in
from agent.state.station_state import StationState
from agent.store import connect


def ocpp_chargers(station: dict, versions: dict[str, str],
                  each: dict[str, dict] | None = None, **cfg: Any) -> dict[str, OcppChargerConfig]:
    """`each`: charger id -> settings of that charger alone (over `cfg`)."""
    return {c["id"]: OcppChargerConfig(charge_point_id=c["id"], version=versions[c["id"]],
                                       connectors=c.get("connectors", 1),
                                       max_power_kw=c["maxPower"],
                                       **{**cfg, **(each or {}).get(c["id"], {})})
            for c in station["chargers"]}


def make_chargers(configs: dict[str, OcppChargerConfig], ocpp: OcppSettings) -> dict[str, OcppCharger]:
    return {cid: OcppCharger(cid, c, ocpp) for cid, c in configs.items()}


def metered_sub_board(cfg: dict, sim: Simulator, station: dict, rating_a: float,
                      circuit: str = "sub") -> None:
    """The agent's side of the simulator's metered sub-board (a `settings` hook of
    `ocpp_station`): its meter as a device, the circuit at `rating_a` per phase, and every
    charger under it with the phases and rotation `station` gives it (a 1-phase charger's
    minimum is 6 A: 1.38 kW)."""
    meter = sim.endpoints["circuitMeters"][circuit]
    cfg["devices"].append({"name": f"{circuit}-meter", "kind": "meter",
                           "profile": meter["profile"], "unit_id": meter["unit"],
                           "endpoint": f"tcp://{meter['tcp']}"})  # fmt: skip
    cfg["station"]["circuits"] = [{"id": circuit, "max_current_a": rating_a,
                                   "meter": f"{circuit}-meter"}]  # fmt: skip
    for ch in cfg["station"]["chargers"]:
        spec = next(c for c in station["chargers"] if c["id"] == ch["id"])
        ch.update(circuit=circuit, phase_rotation=spec.get("phaseRotation", "L1L2L3"))
        if spec.get("phases") == 1:
            ch.update(phases=1, min_power_kw=1.38)


class OcppStation:
    def __init__(self, sim: Simulator, cs: CentralSystem, cps: dict[str, SimChargePoint],
                 loop: ControlLoop | None) -> None:
        self.sim, self.cs, self.cps, self.loop = sim, cs, cps, loop
        self._runner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def run(self) -> None:
        assert self.loop is not None
        self._runner = asyncio.get_running_loop().create_task(self.loop.run(self._stop))

    async def until(self, cond: Callable[[], bool], timeout: float = 30.0, step: float = 0.1) -> bool:
        """Poll `cond` with a generous deadline (never a timing assertion in itself)."""
        for _ in range(int(timeout / step)):
            if cond():
                return True
            await asyncio.sleep(step)
        return cond()

    def power(self, cid: str, idx: int) -> float:
        return self.sim.model.chargers[cid].connector(idx).power_kw

    async def close(self) -> None:
        """Each part must end within CLOSE_S: one that does not fails the test by name,
        never hangs it (a charge point's lost cancel once did: SimChargePoint.stop)."""
        self._stop.set()
        if self._runner is not None:
            await _ends(self._runner, "the control loop after its stop event")
        for cid, cp in self.cps.items():
            await _ends(cp.stop(), f"charge point {cid}'s stop()")
        await _ends(self.cs.close(), "the central system's close()")
        if self.loop is not None:
            await _ends(self.loop.devices.close(), "the station devices' close()")


CLOSE_S = 30.0  # generous: every part ends in well under a second when nothing is wrong


async def _ends(aw: Any, what: str) -> None:
    """Await `aw` for at most CLOSE_S; an AssertionError naming it if it has not ended."""
    task = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task}, timeout=CLOSE_S)
    if not done:
        task.cancel()
        raise AssertionError(f"{what} did not end within {CLOSE_S:g} s")
    task.result()  # raises what it raised


@contextlib.asynccontextmanager
async def ocpp_station(tmp_path: Path, station: dict, versions: dict[str, str], *,
                       control: dict | None = None, ocpp: dict | None = None,
                       with_loop: bool = True, base_load_kw: float = 0.0,
                       pessimistic_base_kw: float = 15.0,
                       charger_cfg: dict | None = None,
                       faults: dict[str, str] | None = None,
                       each_charger: dict[str, dict] | None = None,
                       charge_points: dict[str, dict] | None = None,
                       settings: Callable[[dict, Simulator], None] | None = None,
                       loop_knows_ocpp: bool = False,
                       ) -> AsyncIterator[OcppStation]:
    """`faults`: charge point id -> a fault kind (SimChargePoint.fault) on before it first
    connects. `each_charger`: charger id -> its own OcppChargerConfig settings;
    `charge_points`: charger id -> SimChargePoint options; `settings`: edits the agent's
    settings dict before they are built (circuits, [phase_switch]...). `loop_knows_ocpp`:
    the control loop is given `ocpp` too (as the daemon does: one [ocpp] for both), not the
    defaults (its `meter_interval_s` then says 1 s whatever the central system asked: the
    case of a charger that keeps a longer interval than the one asked)."""
    async with Simulator(station, rtu_meter=False) as sim:
        sim.set(base_load_kw=base_load_kw, pv_kw=0.0)
        ocpp_settings = OcppSettings(host="127.0.0.1", port=0, **(ocpp or {}))
        chargers = make_chargers(ocpp_chargers(station, versions, each_charger,
                                               **(charger_cfg or {})), ocpp_settings)
        cs = CentralSystem(ocpp_settings, chargers)
        await cs.start()
        loop = None
        if with_loop:
            cfg = agent_config(sim.endpoints, tmp_path / "agent.db", control=control or {})
            cfg["station"]["grid_capacity_kw"] = station["gridCapacity"]
            cfg["station"]["pessimistic_base_load_kw"] = pessimistic_base_kw
            if loop_knows_ocpp:
                cfg["ocpp"] = {"host": "127.0.0.1", "port": 0, **(ocpp or {})}
            if settings is not None:
                settings(cfg, sim)
            s = AgentSettings(**cfg)
            devices = StationDevices(s)
            for cid, ch in chargers.items():  # device name = charger id here
                swap_in(devices, cid, cid, ch)
            clock = RealClock()
            state = StationState(s, CycleStats(), DeviceStatus(devices))
            loop = ControlLoop(s, devices, Controller(s, SessionTracker(connect(s.storage.db_path), clock)), clock,
                               state.stats, state=state)
            cs.pace_after_cycles(loop)  # as the daemon wires it
        cps = {cid: SimChargePoint(sim, cid, f"ws://127.0.0.1:{cs.port}/ocpp/{cid}",
                                   version=versions[cid], **(charge_points or {}).get(cid, {}))
               for cid in chargers}
        st = OcppStation(sim, cs, cps, loop)
        try:
            for cid, kind in (faults or {}).items():
                cps[cid].fault(kind)
            for cp in cps.values():
                await cp.start()
            if loop is not None:
                await loop.start()
            yield st
        finally:
            await st.close()
