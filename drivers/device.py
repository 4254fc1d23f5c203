"""A Modbus device described by a profile: planned block reads, decoding, value checks, health.

Capability classes (drivers/devices.py) sit on top and turn named values into readings.

Value checks, per read: decoding (NaN, SunSpec scale factors), the point's range, its
`max_rate` against the previous observation, then the capability's cross-checks between
points (`cross_check`: a meter's phases must add up to its total). A point that was invalid
becomes valid again only when two consecutive reads are plausible (in range, consistent
with each other, passing the cross-checks): random register contents (a gateway answering
with garbage) pass every single-read check now and then, and one such read must not flip
the value back to trusted.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, NoReturn

from drivers import sunspec
from drivers.bulk import BlockDecoder, Raw
from drivers.codec import CodecError, decode_raw, encode, engineering, sunspec_not_implemented
from drivers.health import Health, HealthTracker
from drivers.plan import Block, Slot, plan_blocks
from drivers.profile import Point, Profile
from drivers.sunspec_resolve import missing_text, place
from drivers.transport import Bus, TransportError

log = logging.getLogger(__name__)

Key = Hashable  # point name, or (name, connector idx) for per-connector points
Value = float | str | None


class DeviceError(Exception):
    """The device gave no usable answer this time; `kind` is a health error kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class NotSupported(DeviceError):
    """The profile has no (writable) point for what was asked."""

    def __init__(self, message: str) -> None:
        super().__init__("unsupported", message)


@dataclass(frozen=True, slots=True)
class _Bad:
    """Why a value is invalid this read. `value`: the number it was, when it decoded to one
    (the next read's jump is judged against it); `plausible`: it was in range and finite and
    only its jump from the previous one was refused, so it may confirm the next read."""

    kind: str
    message: str
    value: float | None = None
    plausible: bool = False


class _Seen(NamedTuple):
    """One per point and read: a tuple, as cheap to make as it gets."""

    value: float
    t: float
    plausible: bool


@dataclass(frozen=True, slots=True)
class Target:
    key: Key
    point: Point
    unit_id: int
    address: int
    connector: int | None = None


class ModbusDevice:
    kind: ClassVar[str] = ""

    def __init__(self, bus: Bus, unit_id: int, profile: Profile, *, timeout_s: float = 0.2,
                 connectors: int | None = None, retries: int = 0, offline_after: int = 2,
                 clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], float] = time.time, invert: bool = False) -> None:
        if self.kind and profile.kind != self.kind:
            raise ValueError(f"{profile.path}: profile kind {profile.kind!r}, expected {self.kind!r}")
        # Modbus TCP devices may use the whole byte (Keba and Vestel answer on 255); on a
        # serial line 248-255 are reserved.
        top = 247 if bus.endpoint.is_serial else 255
        if not 0 <= unit_id <= top:
            raise ValueError(f"unit_id: {unit_id} is not 0..{top}")
        if timeout_s <= 0:
            raise ValueError("timeout_s: must be > 0")
        if connectors is not None and connectors < 1:
            raise ValueError("connectors: must be >= 1")
        self.bus = bus
        self.unit_id = unit_id
        self.profile = profile
        self.timeout_s = timeout_s
        self.retries = retries
        self.connectors = connectors or profile.connectors
        # A device mounted or wired the other way round (SolarEdge export meters, evcc
        # reads them with scale -1): its capability flips the sign of power readings.
        self.invert = invert
        self._clock = clock
        self._wallclock = wallclock
        self._health = HealthTracker(offline_after=offline_after, clock=clock, wallclock=wallclock)
        self._targets: dict[Key, Target] | None = None
        self._blocks: list[Block] = []
        self._decoders: list[BlockDecoder] = []
        self._readable: tuple[tuple[Key, Target], ...] = ()
        self._observed: dict[Key, _Seen] = {}  # the last observation: jump and recovery checks
        self._bad: dict[Key, str] = {}  # keys currently invalid (logged once per episode)
        self.name = f"{profile.model or profile.name}@{bus.endpoint}#{unit_id}"

    # -- addressing ------------------------------------------------------------------
    @property
    def health(self) -> Health:
        return self._health.snapshot()

    def _unit_for(self, point: Point, idx: int | None) -> int:
        if point.device_id is not None:
            return point.device_id
        if idx is None:
            return self.unit_id
        return self.unit_id + (idx - 1) * self.profile.connector_id_stride

    async def _prepare(self) -> dict[Key, Target]:
        if self._targets is not None:
            return self._targets
        placed: dict[str, tuple[Point, int]] = {
            p.name: (p, p.address) for p in self.profile.points}
        if self.profile.sunspec:
            placed = await self._place_sunspec()
        targets: dict[Key, Target] = {}
        for name, (p, base) in placed.items():
            if p.per_connector:
                for idx in range(1, self.connectors + 1):
                    addr = base + (idx - 1) * self.profile.connector_stride
                    targets[(name, idx)] = Target((name, idx), p, self._unit_for(p, idx), addr, idx)
            else:
                targets[name] = Target(name, p, self._unit_for(p, None), base)
        slots = [Slot(t.key, t.unit_id, t.point.table, t.address, t.point.length)
                 for t in targets.values() if t.point.readable]
        self._blocks = plan_blocks(slots, self.profile.max_block, self.profile.max_gap)
        self._decoders = self._compile(targets)
        self._readable = tuple((k, t) for k, t in targets.items() if t.point.readable)
        self._targets = targets
        return targets

    def _compile(self, targets: dict[Key, Target]) -> list[BlockDecoder]:
        """One decoder per planned block. The "not implemented" marker is checked on every
        point of a SunSpec profile and on every scale factor (as _scale_factor needs)."""
        points = {key: t.point for key, t in targets.items()}
        sf_names = {t.point.scale_register for t in targets.values() if t.point.scale_register}
        check = [key for key, t in targets.items()
                 if self.profile.sunspec or t.point.name in sf_names]
        return [BlockDecoder(block, points, check) for block in self._blocks]

    async def _place_sunspec(self) -> dict[str, tuple[Point, int]]:
        try:
            models = await sunspec.discover(self.bus, self.unit_id, timeout_s=self.timeout_s)
        except TransportError as exc:
            self._fail(exc.kind, str(exc))
        except sunspec.SunSpecError as exc:
            self._fail("decode", str(exc))
        placement = place(self.profile, models)
        self._health.missing = missing_text(placement.missing)
        if not any(name in self.profile for name in placement.points):
            # Nothing this profile reads exists here: an error, never "online" with no values.
            found = ", ".join(f"{m.id} ({m.name})" for m in models.values()) or "none"
            self._fail("model", f"{self.name}: missing SunSpec {self._health.missing}; "
                       f"the device has models {found}")
        if placement.missing:
            log.warning("%s: missing SunSpec %s", self.name, self._health.missing)
        return {name: (pl.point, pl.address) for name, pl in placement.points.items()}

    @property
    def blocks(self) -> list[Block]:
        """The read plan (empty until the first read)."""
        return list(self._blocks)

    def _fail(self, kind: str, message: str) -> NoReturn:
        was_online = self._health.online
        self._health.failed(kind, message)
        if was_online and not self._health.online:
            log.warning("%s offline: %s", self.name, message)
        raise DeviceError(kind, message)

    # -- reading ---------------------------------------------------------------------
    async def read_values(self) -> dict[Key, Value]:
        """Every readable point, decoded and checked; invalid or unsupported values are None.

        Raises DeviceError when the device does not answer usefully; the rest of the read is
        abandoned then, so a silent device costs one timeout per cycle, not one per block.
        """
        await self._prepare()
        raw: dict[Key, Raw] = {}
        na: set[Key] = set()
        errors: dict[Key, str] = {}
        for block, decoder in zip(self._blocks, self._decoders, strict=True):
            t0 = self._clock()
            try:
                regs = await self.bus.read(block.unit_id, block.table, block.start, block.count,
                                           timeout_s=self.timeout_s, retries=self.retries)
            except TransportError as exc:
                self._fail(exc.kind, str(exc))
            latency = self._clock() - t0
            decoder.decode(regs, raw, na, errors)
            self._health.latency(latency)
        self._health.ok()
        now = self._clock()
        checked: dict[Key, Value | _Bad] = {
            key: self._decode_checked(target, raw, na, errors, now)
            for key, target in self._readable
        }
        good = {k: v for k, v in checked.items() if isinstance(v, float)}
        for key, message in self.cross_check(good).items():
            checked[key] = _Bad("invalid", message, value=good[key])
        return {key: self._settle(key, result, now) for key, result in checked.items()}

    def cross_check(self, values: dict[Key, float]) -> dict[Key, str]:
        """Points whose values (each valid on its own, engineering units) contradict each
        other this read, with the reason; capabilities override this."""
        return {}

    def _settle(self, key: Key, result: Value | _Bad, now: float) -> Value:
        """Record the observation and turn a checked value into the reading's value."""
        if isinstance(result, _Bad):
            prev = self._observed.get(key)
            # Without a number (NaN, decode error) the last one stays the jump reference.
            value = result.value if result.value is not None else prev.value if prev else math.nan
            self._observed[key] = _Seen(value, now, result.plausible)
            return self._invalid(key, result.kind, result.message)
        if result is None:
            return None  # SunSpec's "not implemented": no value, no error
        prev = self._observed.get(key)
        self._observed[key] = _Seen(result if isinstance(result, float) else math.nan, now, True)
        if key in self._bad:
            if prev is None or not prev.plausible:
                return None  # first plausible read after invalid ones: wait for a second
            log.info("%s: %s valid again", self.name, _key_text(key))
            del self._bad[key]
        self._health.value_ok(key, now)
        return result

    @staticmethod
    def _scale_factor(target: Target, raw: dict[Key, Raw], na: set[Key]) -> int | None | bool:
        """SunSpec scale factor exponent; False when it is missing or 'not implemented'."""
        if target.point.scale_register is None:
            return None
        sf_key: Key = target.point.scale_register
        if sf_key not in raw and target.connector is not None:
            sf_key = (target.point.scale_register, target.connector)
        sf = raw.get(sf_key)
        if not isinstance(sf, int) or sf_key in na or not -10 <= sf <= 10:
            return False
        return sf

    def _decode_checked(self, target: Target, raw: dict[Key, Raw], na: set[Key],
                        errors: dict[Key, str], now: float) -> Value | _Bad:
        p = target.point
        key = target.key
        if self.profile.sunspec and key in na:
            return None
        sf = self._scale_factor(target, raw, na) if p.scale_register is not None else None
        if sf is False:
            return _Bad("decode", f"{p.name}: scale factor {p.scale_register} unusable")
        if key in errors:
            return _Bad("decode", errors[key])
        try:
            value = engineering(p, raw[key], sf if isinstance(sf, int) and not isinstance(sf, bool) else None)
        except CodecError as exc:
            return _Bad("decode", str(exc))
        if isinstance(value, float):
            if not math.isfinite(value):
                return _Bad("invalid", f"{p.name}: {value}")
            if p.min is not None and value < p.min or p.max is not None and value > p.max:
                return _Bad("invalid", f"{p.name}: {value:g} outside [{p.min}, {p.max}]",
                            value=value)
            prev = self._observed.get(target.key)
            # A jump is judged against the previous observation (valid or not), so a value
            # that really moved is accepted from its second sighting on, never stuck out.
            if p.max_rate is not None and prev is not None and now > prev.t:
                if abs(value - prev.value) / (now - prev.t) > p.max_rate:
                    return _Bad("invalid", f"{p.name}: jump {prev.value:g} -> {value:g} faster "
                                f"than {p.max_rate:g}/s", value=value, plausible=True)
        return value

    def _invalid(self, key: Key, kind: str, message: str) -> Value:
        """Count and log (once per episode) a bad value; its reading field becomes None."""
        self._health.value_error(kind, f"{self.name}: {message}")
        if key not in self._bad:
            log.warning("%s: ignoring %s (%s)", self.name, _key_text(key), message)
        self._bad[key] = message
        return None

    # -- writing ---------------------------------------------------------------------
    async def write_point(self, name: str, value: float | str, idx: int | None = None) -> None:
        targets = await self._prepare()
        point = self.profile.point(name)
        key: Key = (name, idx) if point is not None and point.per_connector else name
        target = targets.get(key)
        if point is None or target is None or not point.writable:
            raise NotSupported(f"{self.profile.path.name}: no writable point {name!r}"
                               + (f" for connector {idx}" if idx is not None else ""))
        point = target.point  # a SunSpec point as placed on the model found
        sf: int | None = None
        if point.scale_register is not None:
            sf_target = targets[point.scale_register]
            regs = await self._read_target(sf_target)
            raw = decode_raw(sf_target.point, regs)
            if self.profile.sunspec and sunspec_not_implemented(sf_target.point, regs):
                raise DeviceError("decode", f"{self.name}: {name}: scale factor not implemented")
            sf = int(raw)
        regs = encode(point, value, sf)
        t0 = self._clock()
        try:
            await self.bus.write(target.unit_id, target.address, regs, timeout_s=self.timeout_s,
                                 retries=max(1, self.retries), function=point.write_function)
        except TransportError as exc:
            self._fail(exc.kind, str(exc))
        self._health.latency(self._clock() - t0)
        self._health.ok()

    async def _read_target(self, target: Target) -> list[int]:
        try:
            return await self.bus.read(target.unit_id, target.point.table, target.address,
                                       target.point.length, timeout_s=self.timeout_s)
        except TransportError as exc:
            self._fail(exc.kind, str(exc))


def _key_text(key: Key) -> str:
    if isinstance(key, tuple):
        return f"{key[0]} (connector {key[1]})"
    return str(key)
