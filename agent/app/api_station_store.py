"""The API-only station as the daemon runs it: chargers declared through the local API
(Electra's `POST /station/config`) are kept in the store's `meta` table, so a restart
serves the same chargers; the grid capacity and base load start from `[station]`.

The daemon steps it after every control cycle (`ControlLoop.between_cycles`), so the
API's sessions are re-allocated at the configured period by the same loop that reads the
grid meter, rather than by a second independent loop. Its session events go to the same
uplink hook as the tracker's, and the `active` 'api' rows are resumed when it opens.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agent.api.models import StationConfig
from agent.app.api_station import ApiStation

if TYPE_CHECKING:
    import sqlite_utils

    from agent.config.settings import AgentSettings
    from agent.control.session_records import EventHook
    from agent.model.clock import Clock
    from agent.uplink import Uplink

log = logging.getLogger(__name__)
META_KEY = "api_station_config"


class StoredApiStation(ApiStation):
    @classmethod
    def open(
        cls,
        settings: AgentSettings,
        db: sqlite_utils.Database,
        clock: Clock,
        *,
        signals: Any | None = None,
        uplink: Uplink | None = None,
        on_event: EventHook | None = None,
    ) -> StoredApiStation:
        """`on_event`: the session events' hook (the daemon's uplink bridge)."""
        st = settings.station
        config = StationConfig(
            stationId=st.id, gridCapacity=st.grid_capacity_kw,
            baseLoad=st.pessimistic_base_load_kw,
        )  # fmt: skip
        row = db.execute("SELECT value FROM meta WHERE key = ?", [META_KEY]).fetchone()
        if row is not None:
            try:
                config = StationConfig.model_validate(json.loads(row[0]))
            except (ValueError, ValidationError) as exc:
                log.warning("stored API station configuration ignored: %s", exc)
        c = settings.control
        from agent.energy.tariffs import prices_at

        return cls(config, db, clock, probe_kw=c.probe_margin_kw,
                   probe_fraction=c.probe_margin_fraction, signals=signals, uplink=uplink,
                   import_price=lambda ts: prices_at(settings.tariff, signals, ts)[0],
                   on_event=on_event, silence_s=settings.api.session_silence_s)  # fmt: skip

    def replace_station_config(self, config: StationConfig) -> None:
        with self.store.conn:
            self.store.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [META_KEY, config.model_dump_json()],
            )
        super().replace_station_config(config)
