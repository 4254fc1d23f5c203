"""Load and validate register-map profiles (config/profiles/*.toml) into frozen dataclasses.

The format is described in docs/profiles.md; this module is its executable contract on the
driver side. Every error names the file and the point so an integrator can fix it at once.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers import sunspec_models
from drivers.sunspec_models import CODEC_TYPE

PROFILES_DIR = Path(__file__).resolve().parent.parent / "config" / "profiles"

KINDS = ("meter", "battery", "inverter", "charger")
TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string")
TYPE_LENGTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4,
               "float32": 2, "float64": 4}
TABLES = ("holding", "input")
ORDERS = ("big", "little")
ACCESS = ("r", "rw", "w")
UNITS = ("", "W", "kW", "Wh", "kWh", "A", "V", "Hz", "%", "degC", "s")

_DEVICE_KEYS = {
    "name", "kind", "vendor", "model", "word_order", "byte_order", "max_block", "max_gap",
    "connectors", "connector_stride", "connector_id_stride", "sunspec", "phases", "voltage",
    "description", "bidirectional", "phase_switch_pause_s",
}
_POINT_KEYS = {
    "name", "address", "table", "type", "length", "scale", "scale_register", "offset", "unit",
    "access", "word_order", "byte_order", "per_connector", "min", "max", "max_rate", "enum",
    "description", "device_id", "model", "sunspec_point", "mask", "shift", "byte",
    "write_function",
}
WRITE_FUNCTIONS = (6, 16)  # write single register / write multiple registers


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and the point."""


@dataclass(frozen=True, slots=True)
class Point:
    name: str
    address: int  # protocol address; for SunSpec points the offset inside the model's data
    table: str = "holding"
    type: str = "uint16"
    length: int = 1
    scale: float = 1.0
    scale_register: str | None = None
    offset: float = 0.0
    unit: str = ""
    access: str = "r"
    word_order: str = "big"
    byte_order: str = "big"
    per_connector: bool = False
    min: float | None = None
    max: float | None = None
    max_rate: float | None = None  # largest plausible change per second; a bigger jump is invalid
    enum: tuple[tuple[str, str], ...] | None = None
    description: str = ""
    device_id: int | None = None  # fixed unit id for this point (e.g. Alfen station block on 200)
    model: tuple[int, ...] = ()  # SunSpec models this point may live in (first found wins)
    sunspec_point: str = ""
    sunspec_type: str = ""  # SunSpec type (acc32, enum16, ...): its "not implemented" marker
    mask: int | None = None  # integer points: keep these bits of the raw value...
    shift: int = 0  # ...then shift right (a byte or bit field inside a register)
    write_function: int = 16  # 6 for devices that only take single-register writes

    @property
    def readable(self) -> bool:
        return self.access in ("r", "rw")

    @property
    def writable(self) -> bool:
        return self.access in ("rw", "w")


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    kind: str
    path: Path
    points: tuple[Point, ...]
    vendor: str = ""
    model: str = ""
    word_order: str = "big"
    byte_order: str = "big"
    max_block: int = 120
    max_gap: int = 4
    connectors: int = 1
    connector_stride: int = 0
    connector_id_stride: int = 0  # per-connector points on unit id + (idx-1) * stride
    sunspec: bool = False
    phases: int = 3
    voltage: float = 230.0
    description: str = ""
    bidirectional: bool = False  # chargers: power_limit may be negative (V2G discharge)
    # Chargers that switch between 1 and 3 phases (a writable `charge_phases`, Alfen 1215):
    # how long the charger pauses charging before a new phase count takes effect (None:
    # it cannot switch). agent/control/phase_switch.py waits at least this long.
    phase_switch_pause_s: float | None = None
    _by_name: dict[str, Point] = field(default_factory=dict, compare=False, repr=False)

    def point(self, name: str) -> Point | None:
        return self._by_name.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name


def resolve_profile_path(path_or_name: str | Path) -> Path:
    """A bare name (no suffix, no slash) means config/profiles/<name>.toml."""
    text = str(path_or_name)
    if "/" not in text and not text.endswith(".toml"):
        return PROFILES_DIR / f"{text}.toml"
    return Path(text)


def load_profile(path_or_name: str | Path) -> Profile:
    path = resolve_profile_path(path_or_name)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"{path}: profile not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    return parse_profile(data, path)


def parse_profile(data: dict[str, Any], path: Path) -> Profile:
    def fail(where: str, msg: str) -> ProfileError:
        return ProfileError(f"{path}: {where}: {msg}")

    dev = data.get("device")
    if not isinstance(dev, dict):
        raise fail("[device]", "missing table")
    unknown = set(data) - {"device", "point"}
    if unknown:
        raise fail("top level", f"unknown key(s) {sorted(unknown)}")
    _check_keys(dev, _DEVICE_KEYS, "[device]", fail)

    name = _get(dev, "name", str, None, "[device]", fail)
    kind = _choice(dev, "kind", KINDS, None, "[device]", fail)
    word_order = _choice(dev, "word_order", ORDERS, "big", "[device]", fail)
    byte_order = _choice(dev, "byte_order", ORDERS, "big", "[device]", fail)
    max_block = _get(dev, "max_block", int, 120, "[device]", fail)
    if not 1 <= max_block <= 125:
        raise fail("[device] max_block", "must be 1..125 (Modbus limit for one read)")
    max_gap = _get(dev, "max_gap", int, 4, "[device]", fail)
    if max_gap < 0:
        raise fail("[device] max_gap", "must be >= 0")
    connectors = _get(dev, "connectors", int, 1, "[device]", fail)
    if connectors < 1:
        raise fail("[device] connectors", "must be >= 1")
    phases = _get(dev, "phases", int, 3, "[device]", fail)
    if phases not in (1, 3):
        raise fail("[device] phases", "must be 1 or 3")
    voltage = float(_get(dev, "voltage", (int, float), 230.0, "[device]", fail))
    if voltage <= 0:
        raise fail("[device] voltage", "must be > 0")
    sunspec = _get(dev, "sunspec", bool, False, "[device]", fail)

    raw_points = data.get("point", [])
    if not isinstance(raw_points, list) or not raw_points:
        raise fail("[[point]]", "a profile needs at least one point")
    points: list[Point] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_points):
        where = f"point #{i + 1}"
        if not isinstance(raw, dict):
            raise fail(where, "must be a table")
        if isinstance(raw.get("name"), str):
            where = f"point {raw['name']!r}"
        p = _parse_point(raw, where, fail, word_order, byte_order, sunspec)
        if p.name in seen:
            raise fail(where, "duplicate name")
        seen.add(p.name)
        points.append(p)

    by_name = {p.name: p for p in points}
    for p in points:
        if p.scale_register is not None:
            sf = by_name.get(p.scale_register)
            if sf is None:
                raise fail(f"point {p.name!r} scale_register", f"no point named {p.scale_register!r}")
            if sf.type != "int16":
                raise fail(f"point {p.name!r} scale_register", "must name an int16 point")
        if p.per_connector and kind != "charger":
            raise fail(f"point {p.name!r} per_connector", "only chargers have connectors")
    pause = _phase_switch_pause(dev, by_name.get("charge_phases"), kind, fail)
    return Profile(
        name=name, kind=kind, path=path, points=tuple(points),
        vendor=_get(dev, "vendor", str, "", "[device]", fail),
        model=_get(dev, "model", str, "", "[device]", fail),
        word_order=word_order, byte_order=byte_order, max_block=max_block, max_gap=max_gap,
        connectors=connectors,
        connector_stride=_get(dev, "connector_stride", int, 0, "[device]", fail),
        connector_id_stride=_get(dev, "connector_id_stride", int, 0, "[device]", fail),
        sunspec=sunspec, phases=phases, voltage=voltage,
        description=_get(dev, "description", str, "", "[device]", fail),
        bidirectional=_get(dev, "bidirectional", bool, False, "[device]", fail),
        phase_switch_pause_s=pause,
        _by_name=by_name,
    )


def _phase_switch_pause(dev: dict[str, Any], point: Point | None, kind: str,
                        fail: Any) -> float | None:
    """The capability to switch phases: a writable per-connector `charge_phases` point and
    the pause the charger needs, declared together (one without the other is a mistake)."""
    pause = dev.get("phase_switch_pause_s")
    writable = point is not None and point.writable
    if pause is None:
        if writable:
            raise fail("[device] phase_switch_pause_s", "required with a writable "
                       "'charge_phases' point (the pause the charger needs to switch)")
        return None
    if isinstance(pause, bool) or not isinstance(pause, (int, float)) or not 0 < pause <= 600:
        raise fail("[device] phase_switch_pause_s", "must be a number of seconds in (0, 600]")
    if kind != "charger" or point is None or not writable or not point.per_connector:
        raise fail("[device] phase_switch_pause_s", "needs a writable per-connector "
                   "'charge_phases' point (the phase switch register)")
    return float(pause)


def _parse_point(raw: dict[str, Any], where: str, fail: Any, word_order: str, byte_order: str,
                 sunspec: bool) -> Point:
    _check_keys(raw, _POINT_KEYS, where, fail)
    name = _get(raw, "name", str, None, where, fail)
    if sunspec:
        # SunSpec points are addressed by model and offset inside the model's data block.
        models = raw.get("model")
        if isinstance(models, int) and not isinstance(models, bool):
            models = [models]
        if not (isinstance(models, list) and models and all(isinstance(m, int) for m in models)):
            raise fail(f"{where} model", "required for sunspec profiles: a model id or a list")
        model = tuple(models)
    else:
        if "model" in raw:
            raise fail(f"{where} model", "only for profiles with sunspec = true")
        model = ()
    sunspec_type = ""
    if sunspec:
        # Offset, type and scale factor come from the published model definition; a profile
        # that states them anyway is checked against it.
        spoint, sunspec_type, def_address, size = _sunspec_point(raw, model, where, fail)
        raw = {**raw, "type": CODEC_TYPE[sunspec_type], "length": raw.get("length", size),
               "address": raw.get("address", def_address)}
        if raw["address"] != def_address:
            raise fail(f"{where} address", f"SunSpec model {model[0]} puts {spoint} at "
                       f"offset {def_address}, not {raw['address']}")
        if "scale_register" in raw:
            raise fail(f"{where} scale_register", "SunSpec scale factors come from the model "
                       "definition; leave it out")
    address = _get(raw, "address", int, None, where, fail)
    if not 0 <= address <= 0xFFFF:
        raise fail(f"{where} address", "must be 0..65535")
    ptype = _choice(raw, "type", TYPES, "uint16", where, fail)
    if ptype == "string":
        length = _get(raw, "length", int, None, where, fail)
    else:
        length = _get(raw, "length", int, TYPE_LENGTH[ptype], where, fail)
        if length != TYPE_LENGTH[ptype]:
            raise fail(f"{where} length", f"{ptype} is {TYPE_LENGTH[ptype]} register(s)")
    if length < 1 or length > 125:
        raise fail(f"{where} length", "must be 1..125")
    if address + length - 1 > 0xFFFF:
        raise fail(f"{where} address", "point runs past register 65535")
    scale = float(_get(raw, "scale", (int, float), 1.0, where, fail))
    if scale == 0:
        raise fail(f"{where} scale", "must not be 0")
    enum_raw = raw.get("enum")
    enum: tuple[tuple[str, str], ...] | None = None
    if enum_raw is not None:
        if not isinstance(enum_raw, dict) or not all(isinstance(v, str) for v in enum_raw.values()):
            raise fail(f"{where} enum", "must be a table of raw value -> string")
        enum = tuple((str(k), v) for k, v in enum_raw.items())
    lo = raw.get("min")
    hi = raw.get("max")
    for key, val in (("min", lo), ("max", hi), ("max_rate", raw.get("max_rate"))):
        if val is not None and (isinstance(val, bool) or not isinstance(val, (int, float))):
            raise fail(f"{where} {key}", "must be a number")
    if lo is not None and hi is not None and lo > hi:
        raise fail(f"{where} min", "greater than max")
    mask, shift = _bit_field(raw, ptype, length, where, fail)
    write_function = _get(raw, "write_function", int, 16, where, fail)
    if write_function not in WRITE_FUNCTIONS:
        raise fail(f"{where} write_function", "must be 6 (single register) or 16 (multiple)")
    if write_function == 6 and length != 1:
        raise fail(f"{where} write_function", "6 writes one register; this point has "
                   f"{length}")
    if mask is not None and raw.get("access", "r") != "r":
        raise fail(f"{where} mask", "a bit field is read-only (writing it would clobber the "
                   "register's other bits)")
    device_id = raw.get("device_id")
    if device_id is not None and (not isinstance(device_id, int) or not 0 <= device_id <= 247):
        raise fail(f"{where} device_id", "must be 0..247")
    return Point(
        name=name, address=address,
        table=_choice(raw, "table", TABLES, "holding", where, fail),
        type=ptype, length=length, scale=scale,
        scale_register=_get(raw, "scale_register", str, None, where, fail) if "scale_register" in raw else None,
        offset=float(_get(raw, "offset", (int, float), 0.0, where, fail)),
        unit=_choice(raw, "unit", UNITS, "", where, fail),
        access=_choice(raw, "access", ACCESS, "r", where, fail),
        word_order=_choice(raw, "word_order", ORDERS, word_order, where, fail),
        byte_order=_choice(raw, "byte_order", ORDERS, byte_order, where, fail),
        per_connector=_get(raw, "per_connector", bool, False, where, fail),
        min=None if lo is None else float(lo),
        max=None if hi is None else float(hi),
        max_rate=None if raw.get("max_rate") is None else float(raw["max_rate"]),
        enum=enum,
        description=_get(raw, "description", str, "", where, fail),
        device_id=device_id, model=model,
        sunspec_point=_get(raw, "sunspec_point", str, "", where, fail),
        sunspec_type=sunspec_type, mask=mask, shift=shift, write_function=write_function,
    )


def _bit_field(raw: dict[str, Any], ptype: str, length: int, where: str,
               fail: Any) -> tuple[int | None, int]:
    """`mask`/`shift`, or `byte = "high"|"low"` as shorthand for a byte of a 16-bit register."""
    byte = raw.get("byte")
    if byte is not None:
        if "mask" in raw or "shift" in raw:
            raise fail(f"{where} byte", "use either byte or mask/shift")
        if byte not in ("high", "low") or ptype not in ("uint16", "int16"):
            raise fail(f"{where} byte", "must be 'high' or 'low', on a 16-bit integer point")
        return (0xFF00, 8) if byte == "high" else (0x00FF, 0)
    mask = raw.get("mask")
    shift = _get(raw, "shift", int, 0, where, fail)
    if mask is None and "shift" not in raw:
        return None, 0
    if ptype not in TYPE_LENGTH or ptype.startswith("float"):
        raise fail(f"{where} mask", "bit fields need an integer type")
    bits = 16 * length
    if mask is None:
        mask = (1 << bits) - 1
    if isinstance(mask, bool) or not isinstance(mask, int) or not 0 < mask < (1 << bits):
        raise fail(f"{where} mask", f"must be an integer 1..{(1 << bits) - 1}")
    if not 0 <= shift < bits:
        raise fail(f"{where} shift", f"must be 0..{bits - 1}")
    return mask, shift


def _sunspec_point(raw: dict[str, Any], models: tuple[int, ...], where: str,
                   fail: Any) -> tuple[str, str, int, int]:
    """(point name, SunSpec type, offset) of a SunSpec point in the first listed model;
    every listed model must define the point."""
    name = _get(raw, "sunspec_point", str, None, where, fail)
    for m in models:
        try:
            if not sunspec_models.has_point(m, name):
                raise fail(f"{where} sunspec_point", f"SunSpec model {m} has no point {name!r}")
        except sunspec_models.ModelDefError as exc:
            raise fail(f"{where} model", str(exc)) from None
    mdef = sunspec_models.model_def(models[0])
    pdef = mdef.layout(mdef.fixed_length + 4096).get(name)
    if pdef is None:
        raise fail(f"{where} sunspec_point", f"{name!r} sits in a repeating group whose count "
                   "is a point; only fixed points and length-counted groups can be profiled")
    if "type" in raw and raw["type"] != sunspec_models.CODEC_TYPE[pdef.type]:
        raise fail(f"{where} type", f"SunSpec model {models[0]} defines {name} as {pdef.type}")
    return name, pdef.type, pdef.offset, pdef.size


def _check_keys(table: dict[str, Any], allowed: set[str], where: str, fail: Any) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise fail(where, f"unknown key(s) {sorted(unknown)}")


def _get(table: dict[str, Any], key: str, typ: Any, default: Any, where: str, fail: Any) -> Any:
    if key not in table:
        if default is None and typ is not None:
            raise fail(f"{where} {key}", "required")
        return default
    val = table[key]
    # bool is an int subclass: reject it where a number is expected, and vice versa.
    if isinstance(val, bool) and typ is not bool:
        raise fail(f"{where} {key}", f"expected {_tname(typ)}, got a boolean")
    if not isinstance(val, typ):
        raise fail(f"{where} {key}", f"expected {_tname(typ)}, got {type(val).__name__}")
    return val


def _choice(table: dict[str, Any], key: str, choices: tuple[str, ...], default: str | None,
            where: str, fail: Any) -> str:
    val = _get(table, key, str, default, where, fail)
    if val not in choices:
        raise fail(f"{where} {key}", f"{val!r} is not one of {', '.join(repr(c) for c in choices)}")
    return str(val)


def _tname(typ: Any) -> str:
    if isinstance(typ, tuple):
        return " or ".join(t.__name__ for t in typ)
    return str(typ.__name__)
