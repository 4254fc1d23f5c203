"""Replacing the station's configuration while the daemon runs (cloud `station.config.set`,
Electra's `POST /station/config`).

On a hardware station the chargers are the configured devices: a new configuration may
change the grid capacity and each charger's rated power, but must name exactly the
configured chargers with their connector counts and this station's id. The candidate is
validated as a whole `AgentSettings` (field rules and cross-checks, as `sems config check`),
so a bad one raises `ValueError("field: problem")` and the old configuration stays.

A valid one is swapped into the control loop between two cycles (`Reconfigurer`): the
controller's charger limits and fallbacks, the planner and the ledger all see the new
settings from the same cycle on. The cloud's copy is persisted by `agent.store.signals` and laid
over the TOML file at the next start (`overlay`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from pydantic import ValidationError

from agent.config.ceilings import HardCeilings
from agent.config.settings import AgentSettings, cross_check

if TYPE_CHECKING:
    from agent.control.loop import ControlLoop
    from agent.store.signals import StationConfig

log = logging.getLogger(__name__)
APPLY_TIMEOUT_S = 5.0


def candidate(
    settings: AgentSettings, config: StationConfig, ceilings: HardCeilings
) -> AgentSettings:
    """`settings` with `config` applied, fully validated; ValueError("field: problem"),
    also for a value above the installer's hard ceilings (agent/config/ceilings.py)."""
    st = settings.station
    extra = sorted((config.model_extra or {}).keys())
    if extra:
        raise ValueError(f"config.{extra[0]}: not supported by this station")
    if config.station_id != st.id:
        raise ValueError(f"config.stationId: this station is {st.id!r}")
    given = {c.id: c for c in config.chargers}
    known = {c.id: c for c in st.chargers}
    for i, c in enumerate(config.chargers):
        if c.model_extra:
            raise ValueError(f"config.chargers[{i}].{sorted(c.model_extra)[0]}: not supported")
    for cid in given:
        if cid not in known:
            raise ValueError(f"config.chargers: {cid!r} is not a configured charger")
    for cid in known:
        if cid not in given:
            raise ValueError(f"config.chargers: charger {cid!r} is missing")
    ceilings.check(config)
    chargers = []
    for i, ch in enumerate(st.chargers):
        new = given[ch.id]
        if new.connectors != ch.connectors:
            raise ValueError(
                f"config.chargers[{i}].connectors: charger {ch.id!r} has {ch.connectors}"
            )
        chargers.append({**ch.model_dump(), "max_power_kw": new.max_power})
    data = settings.model_dump()
    data["station"] = {**data["station"], "grid_capacity_kw": config.grid_capacity,
                       "chargers": chargers}  # fmt: skip
    try:
        new_settings = AgentSettings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    problems = cross_check(new_settings)
    if problems:
        raise ValueError(problems[0])
    return new_settings


def overlay(settings: AgentSettings, config: StationConfig | None) -> AgentSettings:
    """At start-up: the persisted cloud configuration over the TOML file's, if it still
    fits the configured hardware and stays under the file's hard ceilings (else the
    file's, with a warning)."""
    if config is None:
        return settings
    try:
        return candidate(settings, config, HardCeilings.of(settings))
    except ValueError as exc:
        log.warning("stored station configuration ignored (%s); using the settings file", exc)
        return settings


class Reconfigurer:
    """Queues a validated configuration and swaps it in between two cycles of the loop."""

    def __init__(self, loop: ControlLoop, ceilings: HardCeilings) -> None:
        self.loop = loop
        self.ceilings = ceilings  # the settings file's; a SIGHUP replaces them
        self._pending: list[tuple[AgentSettings, asyncio.Future[None]]] = []
        self._fallbacks: set[asyncio.Task[None]] = set()
        loop.between_cycles.append(self._apply_pending)

    async def apply(self, config: StationConfig) -> AgentSettings:
        """Validate (ValueError leaves everything as it was), then wait for the swap."""
        new = candidate(self.loop.s, config, self.ceilings)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((new, future))
        try:
            await asyncio.wait_for(asyncio.shield(future), APPLY_TIMEOUT_S)
        except TimeoutError:
            self._pending = [(s, f) for s, f in self._pending if f is not future]
            raise RuntimeError("the control loop did not take the configuration in time") from None
        return new

    def apply_now(self, config: StationConfig) -> AgentSettings:
        """For the local API, whose handlers run on the loop's thread between awaits."""
        new = candidate(self.loop.s, config, self.ceilings)
        self._swap(new)
        return new

    def _apply_pending(self) -> None:
        pending, self._pending = self._pending, []
        for new, future in pending:
            if future.done():
                continue
            try:
                self._swap(new)
            except Exception as exc:  # never leave the command waiting
                future.set_exception(exc)
            else:
                future.set_result(None)

    def _swap(self, new: AgentSettings) -> None:
        old = self.loop.s
        self.loop.configure_station(new)  # synchronous: nothing runs in between
        log.info(
            "station configuration replaced: grid %.1f -> %.1f kW",
            old.station.grid_capacity_kw, new.station.grid_capacity_kw,
        )  # fmt: skip
        # The chargers' own fallback limits follow the new shares.
        task = asyncio.get_running_loop().create_task(self._write_fallbacks())
        self._fallbacks.add(task)
        task.add_done_callback(self._fallbacks.discard)

    async def _write_fallbacks(self) -> None:
        from agent.control.fallbacks import give_fallbacks

        loop = self.loop
        await give_fallbacks(loop.devices.chargers, loop.controller, loop.s, lambda _cid: None)
