"""`StationCommands` (agent/state/station_state.py) for the daemon: what the local API and
the uplink may do to the running station, and nothing more of the loop they see."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config.station_config import Reconfigurer
    from agent.control.loop import ControlLoop
    from agent.control.sessions import Session
    from agent.store.signals import StationConfig


class LoopCommands:
    def __init__(self, loop: ControlLoop, reconfigurer: Reconfigurer) -> None:
        self._loop = loop
        self._reconfigurer = reconfigurer

    def stop_session(self, session_id: str, reason: str) -> Session:
        """No session on the connector means a target of 0 kW from the next cycle, and none
        starts there again until the EV is unplugged. KeyError for an unknown id."""
        return self._loop.stop_session(session_id, reason)

    def reconfigure_now(self, config: StationConfig) -> None:
        self._reconfigurer.apply_now(config)

    async def reconfigure(self, config: StationConfig) -> None:
        await self._reconfigurer.apply(config)
