"""agent/control/counted_draws.py, rule by rule on one snapshot (the cycle-stepped cases are in
tests/agent/test_grid_base_samples.py and test_circuit_meters.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from agent.control.counted_draws import counted_draws
from agent.model.snapshot import ChargerState, ConnectorState, Snapshot

A, B, C = ("CP1", 1), ("CP1", 2), ("CP2", 1)


def snapshot(*connectors: ConnectorState) -> Snapshot:
    by: dict[str, list[ConnectorState]] = {}
    for c in connectors:
        by.setdefault(c.charger_id, []).append(c)
    return Snapshot(t=100.0, ts=datetime(2026, 12, 8, tzinfo=UTC), grid_kw=50.0, pv_kw=None,
                    battery=None, chargers=tuple(ChargerState(cid, True, tuple(cs))
                                                 for cid, cs in by.items()))


def conn(key, kw, *, limit=None, sampled=True) -> ConnectorState:
    return ConnectorState(key[0], key[1], "C", kw, 0.0, limit_kw=limit,
                          power_ts=90.0 if sampled else None)


def test_a_sample_counts_at_most_at_the_limit_in_force_a_live_read_as_read():
    snap = snapshot(conn(A, 10.0, limit=0.5), conn(B, 10.0, limit=0.0),
                    conn(C, 10.0, limit=0.5, sampled=False))
    d = counted_draws(snap, {})
    assert d.drawn == {A: 0.5, B: 0.0, C: 10.0}
    assert d.base == d.drawn


def test_a_sample_counts_at_most_at_the_lowest_limit_since_a_decrease():
    snap = snapshot(conn(A, 10.0, limit=12.0), conn(B, 10.0, limit=12.0))
    d = counted_draws(snap, {}, draw_bounds={A: 4.0})
    assert d.drawn == {A: 4.0, B: 10.0}


def test_a_raise_not_shown_counts_at_its_limit_in_the_base_only():
    snap = snapshot(conn(A, 10.0, limit=30.0), conn(B, 10.0, limit=30.0))
    # B raised with its limit unknown, and a raised connector no longer in the snapshot:
    # neither changes anything.
    d = counted_draws(snap, {A: 30.0, B: None, C: 30.0}, raised=[A, B, C])
    assert d.drawn == {A: 10.0, B: 10.0}
    assert d.base == {A: 30.0, B: 10.0}
