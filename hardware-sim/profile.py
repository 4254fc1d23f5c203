"""The simulator's own reader of device profiles (config/profiles/*.toml).

DESIGN.md: the simulator and the drivers share the profile *data* only, never code, so an
encoding mistake on one side shows up as a failing test instead of cancelling out. This
reader therefore knows just what the simulator needs: fixed-address points (no SunSpec).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# hardware-sim/ sits beside config/ in the repository (the package is installed editable).
DEFAULT_PROFILE_DIR = Path(__file__).resolve().parent.parent / "config" / "profiles"

TYPE_REGISTERS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4,
                  "float32": 2, "float64": 4}
ORDERS = ("big", "little")


class ProfileError(ValueError):
    """A profile the simulator cannot serve; the message names the file and the point."""


@dataclass(frozen=True)
class SimPoint:
    name: str
    address: int
    table: str = "holding"
    type: str = "uint16"
    length: int = 1
    scale: float = 1.0
    offset: float = 0.0
    access: str = "r"
    word_order: str = "big"
    byte_order: str = "big"
    per_connector: bool = False
    enum: dict[str, str] = field(default_factory=dict)
    unit: str = ""
    device_id: int | None = None  # fixed unit id (Alfen's station registers on 200)
    mask: int | None = None  # a bit field inside its register(s), shifted right by `shift`
    shift: int = 0

    @property
    def writable(self) -> bool:
        return self.access in ("rw", "w")

    def address_for(self, idx: int, stride: int) -> int:
        """Protocol address of this point for connector `idx` (1-based)."""
        return self.address + (idx - 1) * stride if self.per_connector else self.address


@dataclass(frozen=True)
class SimProfile:
    name: str
    kind: str
    points: dict[str, SimPoint]
    connectors: int = 1
    connector_stride: int = 0
    connector_id_stride: int = 0  # connector n answers on unit id + (n-1) x stride
    phases: int = 3
    voltage: float = 230.0
    sunspec: bool = False
    # Chargers switching between 1 and 3 phases (`charge_phases`): the pause, simulated s.
    phase_switch_pause_s: float | None = None
    directory: Path | None = None  # where it was loaded from (SunSpec images re-read it)


def load_profile(name: str, directory: Path | None = None) -> SimProfile:
    """A SunSpec profile loads as its [device] part only (`sunspec = True`, no points)."""
    """Load `<directory>/<name>.toml` (default: the repository's config/profiles)."""
    path = (directory or DEFAULT_PROFILE_DIR) / f"{name}.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: profile not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML ({exc})") from None
    return parse_profile(data, name=name, source=str(path))


def parse_profile(data: dict, *, name: str, source: str = "<profile>") -> SimProfile:
    device = data.get("device")
    if not isinstance(device, dict):
        raise ProfileError(f"{source}: [device]: missing table")
    if device.get("sunspec"):
        return SimProfile(name=name, kind=str(device.get("kind", "")), points={}, sunspec=True,
                          directory=Path(source).parent if source != "<profile>" else None)
    word_default = device.get("word_order", "big")
    byte_default = device.get("byte_order", "big")
    for key, value in (("word_order", word_default), ("byte_order", byte_default)):
        if value not in ORDERS:
            raise ProfileError(f"{source}: device.{key}: must be 'big' or 'little'")
    points: dict[str, SimPoint] = {}
    for i, raw in enumerate(data.get("point", [])):
        where = f"{source}: point[{i}] ({raw.get('name', '?')})"
        point = _parse_point(raw, where, word_default, byte_default)
        if point.name in points:
            raise ProfileError(f"{where}.name: duplicate point name")
        points[point.name] = point
    return SimProfile(
        name=name,
        kind=str(device.get("kind", "")),
        points=points,
        connectors=int(device.get("connectors", 1)),
        connector_stride=int(device.get("connector_stride", 0)),
        connector_id_stride=int(device.get("connector_id_stride", 0)),
        phases=int(device.get("phases", 3)),
        voltage=float(device.get("voltage", 230.0)),
        phase_switch_pause_s=(float(device["phase_switch_pause_s"])
                              if "phase_switch_pause_s" in device else None),
    )


def _parse_point(raw: dict, where: str, word_default: str, byte_default: str) -> SimPoint:
    if "name" not in raw or "address" not in raw:
        raise ProfileError(f"{where}: 'name' and 'address' are required")
    if "scale_register" in raw:
        raise ProfileError(f"{where}.scale_register: not supported by the simulator")
    ptype = raw.get("type", "uint16")
    if ptype == "string":
        if not isinstance(raw.get("length"), int) or raw["length"] < 1:
            raise ProfileError(f"{where}.length: required for string points")
        length = raw["length"]
    elif ptype in TYPE_REGISTERS:
        length = TYPE_REGISTERS[ptype]
    else:
        raise ProfileError(f"{where}.type: unknown type {ptype!r}")
    mask, shift = raw.get("mask"), int(raw.get("shift", 0))
    if raw.get("byte") in ("high", "low"):
        mask, shift = (0xFF00, 8) if raw["byte"] == "high" else (0x00FF, 0)
    table = raw.get("table", "holding")
    if table not in ("holding", "input"):
        raise ProfileError(f"{where}.table: must be 'holding' or 'input'")
    access = raw.get("access", "r")
    if access not in ("r", "rw", "w"):
        raise ProfileError(f"{where}.access: must be r, rw or w")
    scale = float(raw.get("scale", 1.0))
    if scale == 0:
        raise ProfileError(f"{where}.scale: must not be zero")
    word_order = raw.get("word_order", word_default)
    byte_order = raw.get("byte_order", byte_default)
    if word_order not in ORDERS or byte_order not in ORDERS:
        raise ProfileError(f"{where}: word_order/byte_order must be 'big' or 'little'")
    return SimPoint(
        name=str(raw["name"]),
        address=int(raw["address"]),
        table=table,
        type=ptype,
        length=length,
        scale=scale,
        offset=float(raw.get("offset", 0.0)),
        access=access,
        word_order=word_order,
        byte_order=byte_order,
        per_connector=bool(raw.get("per_connector", False)),
        enum={str(k): str(v) for k, v in raw.get("enum", {}).items()},
        unit=str(raw.get("unit", "")),
        device_id=raw.get("device_id"),
        mask=mask,
        shift=shift,
    )
