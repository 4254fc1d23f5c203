"""The agent's one price and carbon look-up: cloud signals where they cover a time, else the
`[tariff]` defaults. A module of its own so the ledger, the planner and the session costs
share it without importing each other."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from agent.config.settings import TariffSettings

if TYPE_CHECKING:
    from agent.store.signals import Signals


def prices_at(tariff: TariffSettings, signals: Signals | None, t: datetime) -> tuple[float, float, float]:
    """(import EUR/kWh, export EUR/kWh, gCO2/kWh) in force at `t`: the cloud's tariff and
    carbon signals where they cover `t`, else the `[tariff]` defaults. The one price lookup
    of the agent: the ledger's intervals and each session's cost (agent.control.sessions) use it."""
    price = signals.price_at(t) if signals is not None else None
    carbon = signals.carbon_at(t) if signals is not None else None
    return (
        price.import_eur_kwh if price else tariff.import_eur_kwh,
        price.export_eur_kwh if price else tariff.export_eur_kwh,
        carbon if carbon is not None else tariff.carbon_g_kwh,
    )
