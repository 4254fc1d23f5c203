"""SendPacer's order, cycle by cycle (pure scheduling; the same rules on real charge points:
test_ocpp_burst.py): every decrease woken after the cycle that decided it, before any
increase; at most `increases_per_cycle` increases per cycle, the rest kept in request order;
without a control loop, a request wakes at once."""

from __future__ import annotations

from agent.ocpp.pacing import Due, SendPacer


class Sender:
    def __init__(self, name: str, due: Due, woken: list[str]) -> None:
        self.name, self.due, self.woken = name, due, woken

    def pending(self) -> Due:
        return self.due

    def wake(self) -> None:
        self.woken.append(self.name)
        self.due = None  # sent


def test_unpaced_requests_wake_at_once():
    woken: list[str] = []
    pacer = SendPacer(increases_per_cycle=1)
    pacer.request(Sender("a", "raise", woken))
    pacer.request(Sender("b", "raise", woken))
    assert woken == ["a", "b"]


def test_decreases_all_first_increases_capped_and_carried_over_in_order():
    woken: list[str] = []
    pacer = SendPacer(increases_per_cycle=2)
    pacer.after_cycle()  # a control loop paces it from its first cycle on
    ups = [Sender(f"up{i}", "raise", woken) for i in range(5)]
    downs = [Sender(f"down{i}", "lower", woken) for i in range(4)]
    idle = Sender("idle", None, woken)
    # Requests as a cycle's write phase makes them: increases and decreases mixed.
    for s in (ups[0], downs[0], ups[1], ups[2], downs[1], idle, ups[3], downs[2], ups[4],
              downs[3]):
        pacer.request(s)
    assert woken == []  # nothing inside the cycle
    pacer.after_cycle()
    assert woken == ["down0", "down1", "down2", "down3", "up0", "up1"]
    assert pacer.deferred == 3
    # The next cycle decides another decrease: it still goes before the held increases.
    woken.clear()
    late_down = Sender("down4", "lower", woken)
    pacer.request(late_down)
    pacer.after_cycle()
    assert woken == ["down4", "up2", "up3"]
    woken.clear()
    pacer.after_cycle()
    assert woken == ["up4"]
    woken.clear()
    pacer.after_cycle()
    assert woken == []


def test_no_cap_wakes_every_increase():
    woken: list[str] = []
    pacer = SendPacer(increases_per_cycle=0)
    pacer.after_cycle()
    for i in range(30):
        pacer.request(Sender(f"up{i}", "raise", woken))
    pacer.after_cycle()
    assert len(woken) == 30 and pacer.deferred == 0
