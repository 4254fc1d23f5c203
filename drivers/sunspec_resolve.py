"""Place a SunSpec profile's points on the models a device actually has.

A profile point lists the models it may live in (`[103, 102, 101, 113, 112, 111]`); the
first one the device has wins, and the point's offset, type and scale factor are taken from
that model's published definition, so the same profile reads an int16 + scale-factor model
and its float32 twin. Scale factors become extra points (`<model>.<name>`) read with their
block.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from drivers.profile import Point, Profile
from drivers.sunspec import ModelAt
from drivers.sunspec_models import CODEC_TYPE, model_def


@dataclass(frozen=True, slots=True)
class Placed:
    point: Point  # offset, type and scale factor of the model found
    address: int  # absolute protocol address


@dataclass(frozen=True, slots=True)
class Placement:
    points: dict[str, Placed]  # profile point name -> placement; scale factors too
    missing: dict[tuple[int, ...], tuple[str, ...]]  # model alternatives -> points left out


def place(profile: Profile, models: dict[int, ModelAt]) -> Placement:
    points: dict[str, Placed] = {}
    missing: dict[tuple[int, ...], list[str]] = {}
    for p in profile.points:
        at = next((models[m] for m in p.model if m in models), None)
        if at is None:
            missing.setdefault(p.model, []).append(p.name)
            continue
        pdef = model_def(at.id).layout(at.length).get(p.sunspec_point)
        if pdef is None:  # e.g. a repeating-group instance the device does not have
            missing.setdefault((at.id,), []).append(p.name)
            continue
        scale, sf_key = p.scale, None
        if isinstance(pdef.sf, int):
            scale *= 10.0**pdef.sf
        elif isinstance(pdef.sf, str):
            sf_key = f"{at.id}.{pdef.sf}"
            sf_def = model_def(at.id).layout(at.length)[pdef.sf]
            points.setdefault(sf_key, Placed(
                Point(name=sf_key, address=sf_def.offset, type="int16", sunspec_type="sunssf",
                      model=(at.id,), sunspec_point=pdef.sf), at.address + sf_def.offset))
        resolved = replace(p, address=pdef.offset, type=CODEC_TYPE[pdef.type], length=pdef.size,
                           sunspec_type=pdef.type, scale=scale, scale_register=sf_key,
                           model=(at.id,))
        points[p.name] = Placed(resolved, at.address + pdef.offset)
    return Placement(points, {k: tuple(v) for k, v in missing.items()})


def missing_text(missing: dict[tuple[int, ...], tuple[str, ...]]) -> str:
    """`model 802 or 124 (soc, power)` per missing alternative, for health and logs."""
    return "; ".join(f"model {' or '.join(map(str, models))} ({', '.join(names)})"
                     for models, names in missing.items())
