"""SunSpec device images built with pysunspec2 (its Model and get_mb), from chosen raw
values, and the values a correct reader must decode from them, computed here from the
chosen raw values and pysunspec2's own model definitions - never from drivers/."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from typing import Any

import sunspec2.device as ss_device

SUNS = [0x5375, 0x6E53]
# The counts of repeating groups whose count is a point (705's curves and points).
COUNTS = {"NCrv": 2, "NPt": 3, "N": 3}
REPEAT_ZERO = 3  # instances of groups counted by the model length (160's modules)
_RANGES = {
    "int16": (-30000, 30000), "uint16": (0, 60000), "acc16": (1, 60000), "count": (1, 5),
    "bitfield16": (0, 0x7FFF), "int32": (-2_000_000_000, 2_000_000_000),
    "uint32": (0, 4_000_000_000), "acc32": (1, 4_000_000_000), "bitfield32": (0, 0x7FFFFFFF),
    "enum32": (0, 1000), "int64": (-(2**62), 2**62), "uint64": (0, 2**63), "acc64": (1, 2**63),
    "ipaddr": (1, 0xFFFFFFF0), "bitfield64": (0, 2**62),
}


@dataclass
class Built:
    model_id: int
    regs: list[int]  # ID, L and data, as on the wire
    expected: dict[str, Any] = field(default_factory=dict)  # `group[i].point` -> value
    not_implemented: int = 0


def _choose(pdef: dict, rng: random.Random, skip: bool) -> Any:
    t, name = pdef["type"], pdef["name"]
    if name in COUNTS and t in ("uint16", "count"):
        return COUNTS[name]
    if t == "sunssf":
        return None if skip else rng.randint(-3, 2)
    if skip or t in ("pad", "eui48", "ipv6addr"):
        return None
    if t == "string":
        return f"{name[:6]}{rng.randint(0, 99)}"[: 2 * int(pdef["size"])]
    if t == "enum16":
        symbols = [int(s["value"]) for s in pdef.get("symbols", ())]
        return rng.choice(symbols) if symbols else rng.randint(0, 100)
    if t in ("float32", "float64"):
        return rng.randint(-400000, 400000) / 8  # exact in float32
    lo, hi = _RANGES[t]
    return rng.randint(lo, hi)


def _fill(gdef: dict, rng: random.Random, n: list[int], top: bool) -> dict:
    data: dict[str, Any] = {}
    for p in gdef.get("points", ()):
        if top and p["name"] in ("ID", "L"):
            continue
        n[0] += 1
        # every fourth point (and every seventh scale factor) is "not implemented"
        skip = n[0] % 4 == 0 if p["type"] != "sunssf" else n[0] % 7 == 0
        data[p["name"]] = _choose(p, rng, skip and p["name"] not in COUNTS)
    for g in gdef.get("groups", ()):
        count = g.get("count")
        if count is None:
            data[g["name"]] = _fill(g, rng, n, False)
            continue
        reps = COUNTS.get(count, REPEAT_ZERO) if isinstance(count, str) else int(count) or REPEAT_ZERO
        data[g["name"]] = [_fill(g, rng, n, False) for _ in range(reps)]
    return data


def build(model_id: int, seed: int = 0, values: dict[str, Any] | None = None) -> Built:
    """`values` sets chosen raw values of fixed points (None: not implemented)."""
    mdef = ss_device.get_model_def(model_id)
    rng = random.Random(model_id * 1000 + seed)
    data = _fill(mdef["group"], rng, [0], True)
    data.update(values or {})
    data["ID"] = model_id
    model = ss_device.Model(model_id=model_id, data=data)
    assert not model.error_info, model.error_info
    raw = model.get_mb()
    regs = list(struct.unpack(f">{len(raw) // 2}H", raw))
    built = Built(model_id, regs)
    _expect(mdef["group"], data, "", data, built, top=True)
    return built


def _expect(gdef: dict, data: dict, prefix: str, top_data: dict, built: Built, top: bool) -> None:
    for p in gdef.get("points", ()):
        name = p["name"]
        if top and name in ("ID", "L"):
            continue
        value = data.get(name)
        t = p["type"]
        if value is None or t == "pad":
            built.expected[prefix + name] = None
            built.not_implemented += 1
            continue
        sf = p.get("sf")
        if sf is not None and t != "sunssf":
            sf_value = data.get(sf, top_data.get(sf)) if not str(sf).lstrip("-").isdigit() else int(sf)
            value = None if sf_value is None else value * 10.0**sf_value
            if value is None:
                built.not_implemented += 1
        elif t in ("enum16", "enum32"):
            value = {int(s["value"]): s["name"] for s in p.get("symbols", ())}.get(value, value)
        built.expected[prefix + name] = value
    for g in gdef.get("groups", ()):
        sub = data[g["name"]]
        if isinstance(sub, dict):
            _expect(g, sub, f"{prefix}{g['name']}[1].", top_data, built, False)
        else:
            for i, inst in enumerate(sub, 1):
                _expect(g, inst, f"{prefix}{g['name']}[{i}].", top_data, built, False)


def device_image(models: list[Built], base: int = 40000) -> dict[int, int]:
    regs = list(SUNS)
    for m in models:
        regs += m.regs
    regs += [0xFFFF, 0]
    return {base + i: r for i, r in enumerate(regs)}
