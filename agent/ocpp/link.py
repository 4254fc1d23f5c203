"""What both protocol versions share: the message log, call round trips and errors, meter
value parsing, and the `Link` interface the charger drives.

The library's ChargePoint handles one incoming message at a time and awaits its handler,
so a handler must never make a call itself (it would wait for an answer that cannot be
read): every call the agent makes runs in a task of its own (`OcppCharger`).

The agent's own calls skip the library's schema validation of the request (a payload the
agent built from typed dataclasses; tests/ocpp/test_ocpp_schemas.py validates every kind it
sends against the library's schemas), which cost a thread-pool round trip per call: in a
burst of 100 SetChargingProfile that was most of the send path. Everything the charger
sends, answers included, is still validated.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Protocol

from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.messages import Call, MessageType, validate_payload

LOG_LEN = 200  # messages kept per charger for `sems ocpp log`
PHASES = ("L1", "L2", "L3")


class Link(Protocol):
    """One live connection to a charge point, whatever its version."""

    version: str

    async def set_connector_limit(self, idx: int, profile: dict) -> str: ...
    async def set_max_profile(self, profile: dict) -> str: ...
    async def composite(self, idx: int, duration_s: int, unit: str) -> list[dict] | None: ...
    async def read_rate_unit(self) -> str | None: ...
    async def read_phase_switching(self, evses: int) -> tuple[bool | None, frozenset[int]]: ...
    async def set_meter_interval(self, seconds: int) -> None: ...
    async def trigger_meter_values(self, idx: int) -> str: ...  # "Accepted" or a refusal
    async def close(self) -> None: ...


class Traffic:
    """Per-charger message log and counters (calls, errors, round trips) for the CLI and
    /metrics. Plain data: survives reconnections."""

    def __init__(self) -> None:
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_LEN)
        self.calls_in = 0  # calls the charger made
        self.calls_out = 0  # calls the agent made
        self.errors = 0  # CallErrors, timeouts and rejected profiles
        self.round_trips_s: deque[float] = deque(maxlen=512)

    def record(self, direction: str, raw: str) -> None:
        self.log.append({"ts": time.time(), "dir": direction, "msg": raw})

    def summary(self) -> dict[str, Any]:
        """Counters and the agent's call round trips (ms, p50/p99 of the last 512)."""
        rt = sorted(self.round_trips_s)

        def q(p: float) -> float | None:
            return round(rt[min(len(rt) - 1, int(p * len(rt)))] * 1000.0, 1) if rt else None

        return {"callsIn": self.calls_in, "callsOut": self.calls_out, "errors": self.errors,
                "roundTrips": len(rt), "roundTripMsP50": q(0.5), "roundTripMsP99": q(0.99)}

    def tail(self, limit: int) -> list[dict[str, Any]]:
        return list(self.log)[-limit:] if limit > 0 else []


class TracedMixin:
    """Mixed into the library's ChargePoint: logs raw traffic and times the agent's calls."""

    traffic: Traffic
    timeout_s: float

    async def route_message(self, raw_msg: str) -> None:
        self.traffic.record("in", raw_msg)
        if raw_msg.startswith("[2"):
            self.traffic.calls_in += 1
        await super().route_message(raw_msg)  # type: ignore[misc]

    async def _send(self, message: str) -> None:
        self.traffic.record("out", message)
        await super()._send(message)  # type: ignore[misc]

    async def timed_call(self, payload: Any) -> Any:
        """Send a call; the answer, or raise on timeout / CallError (both counted)."""
        self.traffic.calls_out += 1
        start = time.monotonic()
        try:
            result = await asyncio.wait_for(self.own_call(payload), self.timeout_s)
        except Exception:
            self.traffic.errors += 1
            raise
        self.traffic.round_trips_s.append(time.monotonic() - start)
        return result

    async def own_call(self, payload: Any) -> Any:
        """The library's `ChargePoint.call(payload, suppress=False)` without validating the
        request the agent built itself; the answer is validated as the library does. One
        call at a time per connection (the library's lock), as OCPP requires."""
        me: Any = self
        call = Call(unique_id=str(me._unique_id_generator()), action=type(payload).__name__,
                    payload=remove_nones(snake_to_camel_case(serialize_as_dict(payload))))
        async with me._call_lock:
            await self._send(call.to_json())
            try:
                response = await me._get_specific_response(call.unique_id, me._response_timeout)
            except TimeoutError:
                raise TimeoutError(f"Waited {me._response_timeout}s for response on "
                                   f"{call.to_json()}.") from None
        if response.message_type_id == MessageType.CallError:
            raise response.to_exception()
        response.action = call.action
        await validate_payload(response, me._ocpp_version)
        result_cls = getattr(me._call_result, call.action)
        return result_cls(**camel_to_snake_case(response.payload))

    async def close(self) -> None:
        await self._connection.close()  # type: ignore[attr-defined]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_sampled(values: list[dict]) -> dict[str, float]:
    """Sampled values of one meter value -> {"power_kw", "energy_kwh", "soc_pct",
    "current_l1_a".."current_l3_a"} where present. Power and energy in W/Wh or kW/kWh
    (1.6 `unit`, 2.0.1 `unit_of_measure`); per-phase power samples are summed when no total
    is given. Malformed samples are skipped."""
    out: dict[str, float] = {}
    phase_power = 0.0
    phases_seen = False
    for v in values:
        if not isinstance(v, dict):
            continue
        measurand = v.get("measurand", "Energy.Active.Import.Register")
        number = _number(v.get("value"))
        if number is None:
            continue
        uom = v.get("unit_of_measure") or {}
        unit = v.get("unit") or uom.get("unit") or ""
        number *= 10.0 ** int(uom.get("multiplier", 0) or 0)
        scale = 1.0 if unit.lower().startswith("k") else 1e-3
        if measurand == "Power.Active.Import":
            if v.get("phase") in ("L1", "L2", "L3", "L1-N", "L2-N", "L3-N"):
                phase_power += number * scale
                phases_seen = True
            else:
                out["power_kw"] = number * scale
        elif measurand == "Energy.Active.Import.Register" and not v.get("phase"):
            out["energy_kwh"] = number * scale
        elif measurand == "SoC":
            out["soc_pct"] = number
        elif measurand == "Current.Import" and str(v.get("phase", ""))[:2] in PHASES:
            # per conductor, what a phase switch's count in effect is checked against
            out[f"current_{str(v['phase'])[:2].lower()}_a"] = abs(number)
    if "power_kw" not in out and phases_seen:
        out["power_kw"] = phase_power
    return out
