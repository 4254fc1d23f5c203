"""Station power allocation: numba kernel, plain-Python reference, horizon planner.

    allocate(request: dict) -> dict            # the JSON contract of DESIGN.md, via the kernel
    allocate_reference(request: dict) -> dict  # the same rules in plain Python (reference.py)
    AllocationError                            # invalid request: "field.path: problem"
    StationArrays                              # pre-allocated arrays for the control loop

Imports of numba happen only when the kernel is first needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from allocator.binding import BINDING_NAMES
from allocator.reference import allocate_reference
from allocator.request import AllocationError, parse_request, result_dict

if TYPE_CHECKING:
    from allocator.arrays import StationArrays

__all__ = ["BINDING_NAMES", "AllocationError", "StationArrays", "allocate", "allocate_reference"]


def allocate(request: dict[str, Any]) -> dict[str, Any]:
    """Share the station's power for one request (kW in, kW out); raises AllocationError."""
    from allocator.arrays import StationArrays
    from allocator.request import load_into

    req = parse_request(request)
    arrays = StationArrays(len(req.chargers), len(req.sessions))
    load_into(req, arrays)
    arrays.solve()
    n = len(req.sessions)
    return result_dict(req, arrays.allocation[:n].tolist(), arrays.binding_names(),
                       arrays.battery_power, arrays.grid_power)


def __getattr__(name: str) -> Any:
    if name == "StationArrays":  # lazy: importing allocator must not pay for numba
        from allocator.arrays import StationArrays
        return StationArrays
    raise AttributeError(f"module 'allocator' has no attribute {name!r}")
