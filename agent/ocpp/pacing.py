"""`SendPacer`: when the chargers' profile sends go out, relative to the control cycle.

The loop's write phase only records each connector's wanted limit (`OcppCharger.set_limit`).
Were the chargers' sender tasks woken right there, a burst of 100 of them would build,
serialize and send their SetChargingProfile inside the cycle's own awaits, and the cycle
would wait for all of them (measured at 100 charge points: the write phase grew from about
1 ms to 15-20 ms). So once a control loop paces them (`ControlLoop.between_cycles`), the
senders are woken right after the cycle has ended, in the same period:

- every charger with a decrease (or a max profile to renew) first, all of them, every time;
- then chargers whose limits only go up, at most `increases_per_cycle` of them per cycle
  (0: no cap), oldest request first; the rest wait for the next cycle. A deferred increase
  is simply not applied yet: the loop reads the charger's limit as the last accepted one,
  so the headroom rules keep counting it at its old limit.

Without a loop (a charger driven directly, as some tests do), a charger is woken at once.
"""

from __future__ import annotations

from typing import Literal, Protocol

Due = Literal["lower", "raise"] | None


class Paced(Protocol):
    def pending(self) -> Due:
        """What it has to send now: "lower" (a decrease or a max profile renewal),
        "raise" (increases only) or None (nothing, or only what waits on its interval)."""

    def wake(self) -> None:
        """Let its sender task send what is due."""


class SendPacer:
    def __init__(self, increases_per_cycle: int = 0) -> None:
        self.increases_per_cycle = increases_per_cycle
        self.paced = False  # True once a control loop calls after_cycle()
        self._due: dict[int, Paced] = {}  # by id(), in request order
        self.deferred = 0  # increases held over to a later cycle, counted for the bench/docs

    def request(self, charger: Paced) -> None:
        """`charger` has something to send: now without a loop, else after the cycle."""
        if not self.paced:
            charger.wake()
            return
        self._due.setdefault(id(charger), charger)

    def after_cycle(self) -> None:
        """The cycle has ended: wake the chargers with decreases, then the allowed share of
        the ones with increases only."""
        self.paced = True
        lowering: list[Paced] = []
        raising: list[tuple[int, Paced]] = []
        for key, charger in self._due.items():
            due = charger.pending()
            if due == "lower":
                lowering.append(charger)
            elif due == "raise":
                raising.append((key, charger))
        cap = self.increases_per_cycle or len(raising)
        keep = raising[cap:]
        self.deferred += len(keep)
        self._due = dict(keep)
        # Decreases first: each woken sender writes its frame in turn, in wake order.
        for charger in lowering:
            charger.wake()
        for _, charger in raising[:cap]:
            charger.wake()
