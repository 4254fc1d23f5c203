"""`sems config check --probe`: read every configured device once, through the same drivers
and profiles the daemon uses, and say in words why one does not answer."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config.settings import AgentSettings

# A probe is one request per device, not a control cycle: give a slow RS-485 device time.
MIN_TIMEOUT_S = 0.5


def probe(settings: AgentSettings) -> list[dict[str, Any]]:
    from agent.cli.commands._modbus import quiet_pymodbus

    quiet_pymodbus()
    return asyncio.run(_probe_all(settings))


async def _probe_all(settings: AgentSettings) -> list[dict[str, Any]]:
    from agent.cli.commands._diagnose import explain
    from agent.control.devices import line_endpoint
    from drivers import make_device

    connectors = {ch.device: ch.connectors for ch in settings.station.chargers}
    results: list[dict[str, Any]] = []
    devices = []
    try:
        for d in settings.devices:
            extra = {"connectors": connectors[d.name]} if d.name in connectors else {}
            timeout = max(d.timeout_s, MIN_TIMEOUT_S)
            dev = make_device(d.kind, line_endpoint(d), d.unit_id, d.profile, timeout_s=timeout,
                              retries=0, **extra)  # fmt: skip
            devices.append(dev)
            entry: dict[str, Any] = {"device": d.name, "endpoint": d.endpoint, "unit": d.unit_id}
            start = time.monotonic()
            try:
                await dev.read()
            except Exception as exc:  # DeviceError or what a broken peer provokes: explained below
                why, step = await asyncio.to_thread(explain, d.endpoint, d.unit_id, str(exc),
                                                    timeout)  # fmt: skip
                entry.update(ok=False, why=why, next=step)
            else:
                entry.update(ok=True, ms=(time.monotonic() - start) * 1000)
            results.append(entry)
    finally:
        closed: set[int] = set()
        for dev in devices:
            bus = getattr(dev, "bus", None)
            if bus is not None and id(bus) not in closed:
                closed.add(id(bus))
                await bus.close()
    return results
