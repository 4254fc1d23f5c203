"""Faults a technician (or a test) can inject into one emulated device at run time."""

from __future__ import annotations

from dataclasses import dataclass

FAULT_KINDS = {
    "silent": "no answer at all (the request times out)",
    "exception": "every request answered with a Modbus exception (param code, default 4)",
    "garbage": "reads return random words (mode='random') or all 0xFFFF, NaN in floats (mode='nan')",
    "drop": "open connections closed and new ones refused for `duration` wall-clock seconds",
    "corrupt": "RTU answers sent with a bad CRC (TCP answers unaffected: TCP has no CRC)",
    "slow": "every answer delayed by `delay` seconds",
}


class FaultError(ValueError):
    """Unknown fault or bad parameter; one line naming it."""


@dataclass(frozen=True)
class Fault:
    kind: str
    code: int = 4  # Modbus exception code for "exception" (4 = server device failure)
    mode: str = "random"
    duration: float = 5.0
    delay: float = 1.0


def make_fault(kind: str, **params: object) -> Fault:
    if kind not in FAULT_KINDS:
        raise FaultError(f"fault: unknown kind {kind!r} (one of {', '.join(FAULT_KINDS)})")
    known = {"code", "mode", "duration", "delay"}
    for name in params:
        if name not in known:
            raise FaultError(f"fault.{name}: unknown parameter")
    code = params.get("code", 4)
    if isinstance(code, bool) or not isinstance(code, int) or not 1 <= code <= 255:
        raise FaultError("fault.code: must be a Modbus exception code 1..255")
    mode = params.get("mode", "random")
    if mode not in ("random", "nan"):
        raise FaultError("fault.mode: must be 'random' or 'nan'")
    values: dict[str, float] = {}
    for name, default in (("duration", 5.0), ("delay", 1.0)):
        v = params.get(name, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 3600:
            raise FaultError(f"fault.{name}: must be seconds between 0 and 3600")
        values[name] = float(v)
    return Fault(kind, code, str(mode), values["duration"], values["delay"])
