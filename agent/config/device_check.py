"""What the daemon would die of in `[[devices]]`, found before it starts.

`problems()` runs inside `settings.load()`, so `sems config check` and `sems run` refuse the
same file with the same lines (exit 78): a profile that does not exist or does not parse, a
profile of another kind than the entry, an endpoint the drivers cannot open. `warnings()`
is for config check alone: a serial device missing now may be an adapter not plugged in
yet, which the daemon survives (the device is offline until it appears).
"""

from __future__ import annotations

import os
from typing import Any

# `s` below is agent.config.settings.AgentSettings, which calls problems() from its own
# load(): typed Any so that this module does not import settings back (no import cycle).


def problems(s: Any) -> list[str]:
    from drivers import EndpointError, ProfileError, load_profile, parse_endpoint

    found: list[str] = []
    for i, dev in enumerate(s.devices):
        if getattr(dev, "protocol", "modbus") != "modbus":
            continue  # OCPP chargers connect to us: no profile, no endpoint to open
        where = f"devices[{i}]"
        try:
            profile = load_profile(dev.profile)
        except ProfileError as exc:
            found.append(f"{where}.profile: {exc}{_known_hint(dev.profile)}")
        else:
            if profile.kind != dev.kind:
                found.append(f"{where}.profile: {dev.profile!r} describes a {profile.kind}, "
                             f"but {dev.name!r} is a {dev.kind}")  # fmt: skip
        try:
            parse_endpoint(dev.endpoint)
        except EndpointError as exc:
            found.append(f"{where}.endpoint: {exc}")
    return found


def warnings(s: Any) -> list[str]:
    found: list[str] = []
    for i, dev in enumerate(s.devices):
        if (dev.endpoint or "").startswith("rtu://"):
            path = dev.endpoint.removeprefix("rtu://").split("?", 1)[0]
            if not os.path.exists(path):
                found.append(f"devices[{i}].endpoint: no serial device {path} now "
                             "(adapter unplugged? the agent keeps retrying)")  # fmt: skip
    return found


def _known_hint(name: str) -> str:
    """A bare profile name that is not there: list the shipped ones (typos are common)."""
    from drivers.profile import PROFILES_DIR

    if "/" in name or name.endswith(".toml"):
        return ""
    names = sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))
    return f" (shipped profiles: {', '.join(names)})" if names else ""
