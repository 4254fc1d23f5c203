"""Measured-consumption caps and the rotation of paused sessions.

Caps: a session that draws clearly less than its limit (by more than the probe margin, for
`cap_after_s`) is capped at its draw plus the margin, so the allocator hands the rest to
others (where the draw is a sample, the next sample below caps it: asked for at once,
`samples_wanted`). The cap follows the draw down; once the session draws up to its cap again, the cap
lifts and the next allocation offers it its full share, so no EV is starved by a stale
measurement. Caps never go below the session's minimum power: a cap under it would pause
the session for good.

Rotation: when the budget cannot give every session its minimum, the allocator pauses the
latest arrivals. A session paused for `max_pause_s` is moved to the front of the order
given to the allocator, so it runs and the session now last in line pauses in its place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class _CapState:
    below_since: float | None = None
    cap_kw: float | None = None
    last_sample: float | None = None  # the sample last fed, where samples are timestamped
    last_kw: float | None = None  # the draw of the observation before this one
    asked: float | None = None  # the sample after which a new one was last wanted


class CapTracker:
    def __init__(self, probe_kw: float, probe_fraction: float, cap_after_s: float) -> None:
        self.probe_kw = probe_kw
        self.probe_fraction = probe_fraction
        self.cap_after_s = cap_after_s
        self._state: dict[str, _CapState] = {}

    def margin(self, measured_kw: float) -> float:
        return max(self.probe_kw, self.probe_fraction * max(0.0, measured_kw))

    def update(
        self, session_id: str, measured_kw: float, limit_kw: float, min_kw: float, t: float,
        sample_t: float | None = None,
    ) -> float | None:
        """Feed one cycle's measurement against the limit in force; return the cap or None.

        `sample_t` identifies the measurement where the charger reports less often than it is
        read (an OCPP charger's last meter value: the time it arrived). A repeated sample is
        not a new observation and changes nothing, so one sample taken while the EV ramps up
        is never read as a minute of drawing less: a cap needs a later sample still below.
        (Only compared for equality: the driver's clock need not be the controller's.)

        A draw still rising (by more than the margin since the previous observation) is an EV
        ramping up, not one that settled below its limit: the clock starts again from it, so
        two samples both taken during a slow ramp do not cap it either (OCPP samples may be
        a minute apart: a cap taken from them would hold the EV for that minute)."""
        st = self._state.setdefault(session_id, _CapState())
        if sample_t is not None:
            if sample_t == st.last_sample:
                return st.cap_kw
            st.last_sample = sample_t
        margin = self.margin(measured_kw)
        rising = st.last_kw is not None and measured_kw > st.last_kw + margin
        st.last_kw = measured_kw
        if st.cap_kw is not None:
            if measured_kw >= st.cap_kw - margin / 2:
                st.cap_kw = None  # drawing up to its cap: offer the full share again
                st.below_since = None
            else:
                st.cap_kw = max(min_kw, min(st.cap_kw, measured_kw + margin))
            return st.cap_kw
        if limit_kw - measured_kw > margin:
            if st.below_since is None or rising:
                st.below_since = t
            if t - st.below_since >= self.cap_after_s:
                st.cap_kw = max(min_kw, measured_kw + margin)
        else:
            st.below_since = None
        return st.cap_kw

    def samples_wanted(self, t: float) -> list[str]:
        """Sessions whose cap waits only on a new sample: timestamped samples (OCPP meter
        values), below the limit since `cap_after_s` ago by the last one, not capped yet.
        Asked for now (TriggerMessage), the sample caps them a cycle or two later instead of
        at the next periodic one, up to a meter interval later (bench/ocpp_trigger.py). Each
        session once per sample: a lost or refused request waits for the periodic one."""
        out = []
        for sid, st in self._state.items():
            if (st.cap_kw is None and st.below_since is not None and st.last_sample is not None
                    and t - st.below_since >= self.cap_after_s and st.asked != st.last_sample):
                st.asked = st.last_sample
                out.append(sid)
        return out

    def cap(self, session_id: str) -> float | None:
        """The session's cap in force, if any (without feeding a measurement)."""
        st = self._state.get(session_id)
        return st.cap_kw if st is not None else None

    def forget(self, keep: Iterable[str]) -> None:
        keep = set(keep)
        for sid in [s for s in self._state if s not in keep]:
            del self._state[sid]


class PauseRotation:
    def __init__(self, max_pause_s: float) -> None:
        self.max_pause_s = max_pause_s
        self._order: list[str] = []
        self._paused_since: dict[str, float] = {}

    def order(self, active: Iterable[str], t: float) -> list[str]:
        """The allocator's session order: arrival order, with over-waited sessions first."""
        active = list(active)
        present = set(active)
        self._order = [s for s in self._order if s in present]
        known = set(self._order)
        self._order += [s for s in active if s not in known]
        for sid in [s for s in self._paused_since if s not in present]:
            del self._paused_since[sid]
        overdue = [s for s in self._order if t - self._paused_since.get(s, t) >= self.max_pause_s]
        if overdue:
            overdue.sort(key=lambda s: self._paused_since[s])  # longest wait first
            self._order = overdue + [s for s in self._order if s not in set(overdue)]
            for s in overdue:
                # It runs from now on; if it is paused again its wait starts afresh.
                del self._paused_since[s]
        return list(self._order)

    def observe(self, paused: Iterable[str], t: float) -> None:
        """Sessions the allocator paused (minimum power not available) this cycle."""
        paused = set(paused)
        for sid in paused:
            self._paused_since.setdefault(sid, t)
        for sid in [s for s in self._paused_since if s not in paused]:
            del self._paused_since[sid]
