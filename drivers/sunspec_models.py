"""SunSpec model definitions, read from the JSON files pysunspec2 ships (data only).

The SunSpec Alliance publishes each model as JSON (points in order, type, size, scale-factor
point, access, enumeration symbols); pysunspec2 carries those files. Reading them here, rather
than typing offsets by hand, keeps every model exactly as the standard defines it. pysunspec2
itself is not used for I/O: the agent's own async transport stays (pysunspec2 is
synchronous), and the package is not even imported, only its data directory located.

Names of points inside repeating groups are written `group[i].point` (1-based), nested as
`Crv[1].Pt[2].V`, so one flat dictionary describes any model instance.
"""

from __future__ import annotations

import importlib.util
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# SunSpec type -> (registers, struct format of the raw value, "not implemented" raw value).
# The not-implemented values are the standard's (SunSpec Information Model Specification,
# "Unimplemented registers"): accumulators use 0, floats NaN (compared by bit pattern).
_TYPES: dict[str, tuple[int, str, int | float | None]] = {
    "int16": (1, ">h", -0x8000), "sunssf": (1, ">h", -0x8000), "pad": (1, ">h", None),
    "uint16": (1, ">H", 0xFFFF), "enum16": (1, ">H", 0xFFFF), "bitfield16": (1, ">H", 0xFFFF),
    "count": (1, ">H", 0xFFFF), "acc16": (1, ">H", 0),
    "int32": (2, ">i", -0x80000000), "uint32": (2, ">I", 0xFFFFFFFF),
    "enum32": (2, ">I", 0xFFFFFFFF), "bitfield32": (2, ">I", 0xFFFFFFFF), "acc32": (2, ">I", 0),
    "ipaddr": (2, ">I", 0),
    "int64": (4, ">q", -0x8000000000000000), "uint64": (4, ">Q", 0xFFFFFFFFFFFFFFFF),
    "bitfield64": (4, ">Q", 0xFFFFFFFFFFFFFFFF), "acc64": (4, ">Q", 0),
    "float32": (2, ">f", math.nan), "float64": (4, ">d", math.nan),
}
SUNSPEC_TYPES = _TYPES  # (registers, struct format, "not implemented" marker) per type
# Our profile codec's type for each SunSpec type (drivers.codec packs these).
CODEC_TYPE = {
    "int16": "int16", "sunssf": "int16", "pad": "int16",
    "uint16": "uint16", "enum16": "uint16", "bitfield16": "uint16", "count": "uint16",
    "acc16": "uint16", "int32": "int32", "uint32": "uint32", "enum32": "uint32",
    "bitfield32": "uint32", "acc32": "uint32", "ipaddr": "uint32", "int64": "int64",
    "uint64": "uint64", "bitfield64": "uint64", "acc64": "uint64", "float32": "float32",
    "float64": "float64", "string": "string", "ipv6addr": "string", "eui48": "string",
}


class ModelDefError(LookupError):
    """A model or point the shipped SunSpec definitions do not have."""


@dataclass(frozen=True, slots=True)
class PointDef:
    name: str  # full name, e.g. "W" or "module[2].DCW"
    offset: int  # registers from the first data register (after ID and L)
    type: str  # SunSpec type
    size: int
    sf: str | int | None  # scale-factor point (full name) or a fixed exponent
    writable: bool
    units: str
    symbols: tuple[tuple[int, str], ...]  # enum / bitfield names


@dataclass(frozen=True, slots=True)
class _GroupDef:
    name: str
    count: int | str  # fixed count, a count point's name, or 0: as many as the length allows
    points: tuple[dict, ...]
    groups: tuple[_GroupDef, ...]


@dataclass(frozen=True, slots=True)
class ModelDef:
    id: int
    name: str
    label: str
    fixed_length: int  # data registers of the fixed part (without ID and L)
    top: _GroupDef

    def layout(self, length: int | None = None, counts: dict[str, int] | None = None) -> dict[str, PointDef]:
        """Every point of an instance `length` registers long (data, without ID and L).

        Repeating groups take their count from `counts` (count-point name -> value, as read
        from the device), else from the length; without either they are left out."""
        out: dict[str, PointDef] = {}
        _lay(self.top, "", 0, out, length, counts or {}, top=True)
        return out


def _size(p: dict) -> int:
    return int(p.get("size") or _TYPES.get(p["type"], (1,))[0])


def _group_len(g: _GroupDef, counts: dict[str, int]) -> int:
    n = sum(_size(p) for p in g.points)
    for sub in g.groups:
        n += _count(sub, counts) * _group_len(sub, counts)
    return n


def _count(g: _GroupDef, counts: dict[str, int]) -> int:
    if isinstance(g.count, str):
        return counts.get(g.count, 0)
    return g.count


def _lay(g: _GroupDef, prefix: str, offset: int, out: dict[str, PointDef], length: int | None,
         counts: dict[str, int], top: bool = False) -> int:
    for p in g.points:
        if top and p["name"] in ("ID", "L"):
            continue
        size = _size(p)
        sf = p.get("sf")
        if isinstance(sf, str):
            try:
                sf = int(sf)
            except ValueError:
                # Scale factors live in the fixed part or the same group (pysunspec2's rule).
                sf = f"{prefix}{sf}" if any(q["name"] == sf for q in g.points) else sf
        symbols = tuple((int(s["value"]), str(s["name"])) for s in p.get("symbols", ()))
        out[f"{prefix}{p['name']}"] = PointDef(
            f"{prefix}{p['name']}", offset, p["type"], size, sf, p.get("access") == "RW",
            str(p.get("units", "")), symbols)
        offset += size
    for sub in g.groups:
        n = _count(sub, counts)
        if sub.count == 0 and length is not None and top:
            one = _group_len(sub, counts)
            n = max(0, (length - offset) // one) if one else 0
        for i in range(1, n + 1):
            offset = _lay(sub, f"{prefix}{sub.name}[{i}].", offset, out, length, counts)
    return offset


def _group(raw: dict) -> _GroupDef:
    count = raw.get("count", 1)
    if isinstance(count, str):
        count = int(count) if count.isdigit() else count
    return _GroupDef(str(raw["name"]), count, tuple(raw.get("points", ())),
                     tuple(_group(g) for g in raw.get("groups", ())))


def models_dir() -> Path:
    spec = importlib.util.find_spec("sunspec2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelDefError("pysunspec2 is not installed: its SunSpec model definitions are needed")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "json"


@cache
def model_def(model_id: int) -> ModelDef:
    path = models_dir() / f"model_{model_id}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelDefError(f"SunSpec model {model_id} has no published definition") from None
    top = _group(raw["group"])
    fixed = sum(_size(p) for p in top.points if p["name"] not in ("ID", "L"))
    return ModelDef(model_id, top.name, str(raw["group"].get("label", top.name)), fixed, top)


def model_name(model_id: int) -> str:
    try:
        return model_def(model_id).name
    except ModelDefError:
        return "unknown"


def point_def(model_id: int, name: str) -> PointDef:
    """A fixed-part point of a model (repeating-group points need `ModelDef.layout`)."""
    found = model_def(model_id).layout().get(name)
    if found is None:
        raise ModelDefError(f"SunSpec model {model_id} has no point {name!r}")
    return found


def raw_value(p: PointDef, regs: Sequence[int]) -> int | float | str | None:
    """The point's raw value, or None for the standard's "not implemented" marker."""
    data = b"".join((r & 0xFFFF).to_bytes(2, "big") for r in regs)
    if p.type in ("string", "ipv6addr", "eui48"):
        if p.type == "string":
            text = data.split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()
            return text or None
        return None if not any(data) else data.hex()
    if p.type == "pad":
        return None
    _n, fmt, na = _TYPES[p.type]
    value = struct.unpack(fmt, data)[0]
    if isinstance(value, float):
        return None if math.isnan(value) else value
    return None if value == na else value


def decode_model(model_id: int, regs: Sequence[int]) -> dict[str, float | int | str | None]:
    """Every point of one model instance from its data registers (after ID and L):
    scaled numbers, enum symbol names, strings; None where not implemented or where the
    scale factor is not implemented."""
    mdef = model_def(model_id)
    fixed = mdef.layout(len(regs))
    counts = {}
    for name, p in fixed.items():
        if p.type == "count" or p.name in _count_names(mdef.top):
            v = raw_value(p, regs[p.offset : p.offset + p.size])
            counts[name] = int(v) if isinstance(v, int) else 0
    layout = mdef.layout(len(regs), counts)
    raws = {name: raw_value(p, regs[p.offset : p.offset + p.size])
            for name, p in layout.items() if p.offset + p.size <= len(regs)}
    out: dict[str, float | int | str | None] = {}
    for name, raw in raws.items():
        p = layout[name]
        if raw is None or isinstance(raw, str) or p.sf is None:
            out[name] = _symbol(p, raw)
            continue
        sf = p.sf if isinstance(p.sf, int) else raws.get(p.sf)
        out[name] = None if not isinstance(sf, int) else scaled(raw, sf)
    return out


def scaled(raw: int | float, sf: int) -> float:
    # round to the scale factor's decimals so 1234 x 10^-2 is 12.34, not 12.340000000000002
    return round(raw * 10.0**sf, max(0, -sf)) if sf < 0 else float(raw * 10**sf)


def _symbol(p: PointDef, raw: int | float | str | None) -> int | float | str | None:
    if p.type in ("enum16", "enum32") and isinstance(raw, int):
        return dict(p.symbols).get(raw, raw)
    return raw


def _count_names(g: _GroupDef) -> set[str]:
    names = {g.count} if isinstance(g.count, str) else set()
    for sub in g.groups:
        names |= _count_names(sub)
    return names


def has_point(model_id: int, name: str) -> bool:
    """Whether a model defines `name` (repeating-group points as `group[i].point`)."""
    mdef = model_def(model_id)
    many = {n: 64 for n in _count_names(mdef.top)}
    return name in mdef.layout(mdef.fixed_length + 4096, many)
