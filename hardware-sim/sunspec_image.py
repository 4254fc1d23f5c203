"""A SunSpec device image for a `sunspec = true` profile, laid out by pysunspec2.

The drivers decode SunSpec with their own reader of the model definitions; the simulator
builds its images with pysunspec2's Model (offsets, scale factors, not-implemented values),
so a layout mistake on either side shows up as a failing test instead of cancelling out.

The image holds the "SunS" marker at 40000, common model 1, then the first listed model of
every profile point (e.g. 203 for the meter, 103 + 160 + 124 + 704 for the inverter, 802 for
the battery), then the end marker. Values are set by profile point name in the profile's
units; scale factors are fixed per unit so every realistic value fits its register.
"""

from __future__ import annotations

import struct
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sunspec2.device as ss_device

from .profile import DEFAULT_PROFILE_DIR, ProfileError, SimPoint, SimProfile
from .registers import Slot

BASE = 40000
SUNS = [0x5375, 0x6E53]
MPPT_MODULES = 4  # model 160 instances (the profile's pv_mppt_1..4)
# Scale-factor exponent by the unit of the points using it: room for 327 kW in an int16 W
# point, 0.01 A and 0.1 V resolution.
_SF_BY_UNIT = {"W": 1, "VA": 1, "var": 1, "Wh": 0, "VAh": 0, "varh": 0, "V": -1, "A": -2,
               "Hz": -2, "%": -1, "Pct": -1, "WPct": -1, "C": -1, "PF": -2, "cos()": -2}

# Implemented ranges (the extreme values are the types' "not implemented" markers).
_RANGE = {"int16": (-0x7FFF, 0x7FFF), "uint16": (0, 0xFFFE), "acc16": (1, 0xFFFF),
          "int32": (-0x7FFFFFFF, 0x7FFFFFFF), "uint32": (0, 0xFFFFFFFE),
          "acc32": (1, 0xFFFFFFFF), "enum16": (0, 0xFFFE), "bitfield16": (0, 0x7FFF),
          "bitfield32": (0, 0x7FFFFFFF)}


@dataclass
class _Placed:
    model_id: int
    group: Any  # the pysunspec2 group holding the point (the model, or a module instance)
    spoint: str


class SunSpecImage:
    """The same interface as registers.RegisterImage, over pysunspec2 models."""

    def __init__(self, name: str, unit: int, directory: Path | None = None) -> None:
        path = (directory or DEFAULT_PROFILE_DIR) / f"{name}.toml"
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ProfileError(f"{path}: cannot load ({exc})") from None
        device = data.get("device", {})
        raw_points = data.get("point", [])
        order: list[int] = [1]
        for p in raw_points:
            models = p["model"] if isinstance(p["model"], list) else [p["model"]]
            if models[0] not in order:
                order.append(models[0])
        self.models = {mid: self._model(mid) for mid in order}
        self.unit = unit
        self.units = [unit]
        points: dict[str, SimPoint] = {}
        self._placed: dict[str, _Placed] = {}
        for p in raw_points:
            models = p["model"] if isinstance(p["model"], list) else [p["model"]]
            points[p["name"]] = SimPoint(
                name=p["name"], address=0, scale=float(p.get("scale", 1.0)),
                access=p.get("access", "r"), unit=str(p.get("unit", "")),
                enum={str(k): str(v) for k, v in p.get("enum", {}).items()})
            self._placed[p["name"]] = self._find(models[0], p["sunspec_point"])
        self.profile = SimProfile(name=name, kind=str(device.get("kind", "")), points=points,
                                  sunspec=True)
        self.slots = {(n, 0): Slot(pt, 0, unit, 0) for n, pt in points.items()}
        self._set_scale_factors()
        self._words = self._layout()

    # -- building ----------------------------------------------------------------------
    @staticmethod
    def _model(mid: int) -> Any:
        data: dict[str, Any] = {"ID": mid}
        if mid == 1:
            data.update(Mn="sems-sim", Md="SunSpec", SN="SIM0001", Vr="1.0")
        if mid == 160:
            data.update(N=MPPT_MODULES, module=[{"ID": i + 1} for i in range(MPPT_MODULES)])
        return ss_device.Model(model_id=mid, data=data)

    def _find(self, mid: int, spoint: str) -> _Placed:
        model = self.models[mid]
        if "." in spoint:  # module[2].DCW
            group, name = spoint.split(".", 1)
            gname, index = group.rstrip("]").split("[")
            return _Placed(mid, model.groups[gname][int(index) - 1], name)
        return _Placed(mid, model, spoint)

    def _set_scale_factors(self) -> None:
        for model in self.models.values():
            groups = [model] + [g for gl in model.groups.values()
                                for g in (gl if isinstance(gl, list) else [gl])]
            for g in groups:
                for p in g.points.values():
                    sf = p.pdef.get("sf")
                    if isinstance(sf, str) and not sf.lstrip("-").isdigit():
                        sf_point = model.points.get(sf) or g.points.get(sf)
                        if sf_point is not None and sf_point.value is None:
                            sf_point.value = _SF_BY_UNIT.get(p.pdef.get("units", ""), 0)

    def _layout(self) -> list[int]:
        raw = b"".join(m.get_mb() for m in self.models.values())
        return SUNS + list(struct.unpack(f">{len(raw) // 2}H", raw)) + [0xFFFF, 0]

    def _model_start(self, mid: int) -> int:
        """Offset (from BASE) of a model's ID register."""
        offset = len(SUNS)
        for m_id, m in self.models.items():
            if m_id == mid:
                return offset
            offset += len(m.get_mb()) // 2
        raise KeyError(mid)

    # -- the RegisterImage interface ---------------------------------------------------
    def has(self, name: str, idx: int = 0) -> bool:
        return idx == 0 and name in self._placed

    def set(self, name: str, value: float | str, idx: int = 0) -> None:
        placed, point = self._placed[name], self.profile.points[name]
        if isinstance(value, str):
            codes = [int(k) for k, v in point.enum.items() if v == value]
            if not codes:
                raise ValueError(f"{name}: {value!r} is not in the profile's enum")
            placed.group.points[placed.spoint].value = codes[0]
        else:
            target = placed.group.points[placed.spoint]
            scaled = (value - point.offset) / point.scale
            if target.pdef["type"].startswith("float"):
                target.value = float(scaled)
            else:
                target.cvalue = scaled
                lo, hi = _RANGE.get(target.pdef["type"], (None, None))
                if lo is not None and hi is not None and target.value is not None:
                    # saturate, as a real device does, rather than wrap round
                    target.value = min(hi, max(lo, int(target.value)))
        self._words = self._layout()

    def get(self, name: str, idx: int = 0) -> float | str:
        placed, point = self._placed[name], self.profile.points[name]
        target = placed.group.points[placed.spoint]
        if point.enum and target.value is not None and str(target.value) in point.enum:
            return point.enum[str(target.value)]
        value = target.cvalue
        return float("nan") if value is None else float(value) * point.scale + point.offset

    def read(self, unit: int, table: str, address: int, count: int) -> list[int] | None:
        first = address - BASE
        if unit != self.unit or table != "holding" or first < 0 or first + count > len(self._words):
            return None
        return self._words[first : first + count]

    def write(self, unit: int, address: int,
              values: list[int]) -> list[tuple[Slot, float | str]] | None:
        """Writes to the registers of RW profile points; each model is re-read by
        pysunspec2 from the written registers."""
        if unit != self.unit or not values:
            return None
        words = list(self._words)
        first = address - BASE
        if first < 0 or first + len(values) > len(words):
            return None
        words[first : first + len(values)] = [v & 0xFFFF for v in values]
        touched: list[str] = []
        for name, placed in self._placed.items():
            p = placed.group.points[placed.spoint]
            start = self._model_start(placed.model_id) + p.offset
            if start < first + len(values) and first < start + p.len:
                if self.profile.points[name].access not in ("rw", "w"):
                    return None
                touched.append(name)
        if not touched:
            return None
        for mid in {self._placed[n].model_id for n in touched}:
            start = self._model_start(mid)
            n = len(self.models[mid].get_mb()) // 2
            self.models[mid].set_mb(struct.pack(f">{n}H", *words[start : start + n]))
        self._words = self._layout()
        return [(self.slots[(n, 0)], self.get(n)) for n in touched]
