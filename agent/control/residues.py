"""Increases under the deadband that have waited long enough to be written (agent/control/
apply.py writes no change smaller than `control.deadband_kw`).

Skipped for good, a residue under the deadband is lost for as long as the share stays put:
on the sub-board day (docs/testing.md) S05's limit sat at 3.15 kW against its share of 3.56
for hours. So a connector whose target has stood above its limit in force for
`control.deadband_hold_s` without a break (the target may move meanwhile) is "due": the
apply step then asks for its increase whatever its size, through the same path as any
increase (only out of the headroom the meters confirm). The wait starts again once the limit
meets the target or the target falls to or below it. One write per connector per hold at
most: that is what the residues cost.

State per connector lives here, beside apply.py's pure rules (as limit_lag.py keeps its own);
the caller passes its clock (`t`, monotonic seconds).
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.control.apply import Key

ABOVE_EPS_KW = 0.001  # apply.py rounds written limits to the watt: closer is met


class Residues:
    """Since when each connector's target has stood above its limit in force."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s  # 0: never (the deadband holds increases for good)
        self._since: dict[Key, float] = {}

    def due(self, targets: Mapping[Key, float], current: Mapping[Key, float | None],
            t: float) -> frozenset[Key]:  # fmt: skip
        """Connectors whose increase (of any size) is wanted since `hold_s` ago or longer.
        Call once per cycle with the cycle's targets and limits in force; a connector with
        no target or an unknown limit, or discharging (V2G ends have their own rule in
        apply.py), starts over."""
        if self.hold_s <= 0:
            self._since.clear()
            return frozenset()
        since: dict[Key, float] = {}
        for key, target in targets.items():
            cur = current.get(key)
            if cur is not None and cur >= 0.0 and target > cur + ABOVE_EPS_KW:
                since[key] = self._since.get(key, t)
        self._since = since
        return frozenset(k for k, t0 in since.items() if t - t0 >= self.hold_s)
