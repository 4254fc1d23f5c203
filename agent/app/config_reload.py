"""SIGHUP (`systemctl reload sems-agent`): re-read the settings file while the agent runs.

The file is validated whole, exactly as at start-up (`sems config check`'s messages). An
invalid file changes nothing: the running configuration stays and one ERROR line names
every problem. A valid file's station part (grid capacity, each charger's rated power) is
swapped in between two cycles, as a cloud `station.config.set` would be; changes to other
sections (devices, [mqtt], [api], ...) need a restart, which a WARNING line says.
Without a handler SIGHUP's default action would terminate the daemon.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config.settings import AgentSettings, ConfigError, load

if TYPE_CHECKING:
    from agent.config.station_config import Reconfigurer

log = logging.getLogger("sems.agent")

# What a running agent can take from the file; everything else is read at start-up only.
LIVE = "station"


async def reload(path: Path, running: AgentSettings, reconfigurer: Reconfigurer) -> bool:
    """Validate `path` and apply its station part; False (and the old config kept) if not."""
    from agent.store.signals import ChargerConfig, StationConfig

    try:
        new = load(path)
    except ConfigError as exc:
        log.error("config reload: %s; keeping the running configuration", "; ".join(exc.problems))
        return False
    st = new.station
    config = StationConfig(
        station_id=st.id,
        grid_capacity=st.grid_capacity_kw,
        chargers=[
            ChargerConfig(id=c.id, max_power=c.max_power_kw, connectors=c.connectors)
            for c in st.chargers
        ],
    )
    from agent.config.ceilings import HardCeilings

    ceilings = reconfigurer.ceilings
    reconfigurer.ceilings = HardCeilings.of(new)  # the installer's word, now the file's
    try:
        await reconfigurer.apply(config)
    except (ValueError, RuntimeError) as exc:
        reconfigurer.ceilings = ceilings
        log.error("config reload: %s; keeping the running configuration", exc)
        return False
    old, fresh = running.model_dump(exclude={LIVE}), new.model_dump(exclude={LIVE})
    restart = sorted(k for k in fresh if fresh[k] != old.get(k))
    if restart:
        log.warning("config reload: %s changed; restart the agent to apply", ", ".join(restart))
    log.info("config reload: %s applied", path)
    return True
