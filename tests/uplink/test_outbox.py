"""The SQLite outbox: durable seq, exact bytes, caps with thinning then dropping."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agent.store import connect
from agent.uplink import messages
from agent.uplink.outbox import Outbox
from agent.uplink.runner import sample

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def outbox(path, **caps) -> Outbox:
    return Outbox(connect(path), station_id="st-1", base_topic="sems/v1/st-1",
                  clock=lambda: T0, **caps)


def session(i: int) -> messages.SessionEvent:
    return messages.SessionEvent(
        event="stopped", session_id=f"s{i}", charger_id="CP001", connector_idx=1,
        started_at=T0, stopped_at=T0, energy_kwh=12.5, peak_kw=50.0,
    )


def test_envelope_and_exact_bytes_validate_against_the_wire_model(tmp_path):
    box = outbox(tmp_path / "db")
    seq = box.append(sample(3))
    [row] = box.fetch_after(0, 10)
    assert row.seq == seq == 1 and row.topic == "sems/v1/st-1/telemetry"
    data = json.loads(row.payload)
    assert data["schema"] == "sems.telemetry.v1" and data["stationId"] == "st-1"
    assert data["ts"] == "2025-01-01T00:00:00.000Z" and data["seq"] == 1
    messages.full_model(messages.Telemetry).model_validate(data)


def test_seq_survives_restart_and_is_never_reused(tmp_path):
    box = outbox(tmp_path / "db")
    seqs = box.append_many([sample(i) for i in range(5)])
    assert seqs == [1, 2, 3, 4, 5]
    box.delete(seqs)  # empty table: MAX(seq) alone would restart at 1
    box.db.conn.close()
    again = outbox(tmp_path / "db")
    assert again.append(sample(9)) == 6
    assert again.stats().depth == 1


def test_delete_ignores_unknown_rows_and_keeps_byte_count(tmp_path):
    box = outbox(tmp_path / "db")
    box.append_many([sample(i) for i in range(3)])
    before = box.stats().bytes
    assert box.delete([2, 99]) == 1
    sizes = box.db.conn.execute("SELECT SUM(length(payload)) FROM outbox").fetchone()[0]
    assert box.stats().bytes == sizes < before


def test_full_outbox_thins_telemetry_then_drops_it_but_keeps_sessions(tmp_path):
    box = outbox(tmp_path / "db", max_rows=200, max_bytes=10**9, thin_max_stride=4)
    kept = []
    for i in range(1000):
        if i % 50 == 0:
            kept.append(box.append(session(i)))
        else:
            box.append(sample(i))
    st = box.stats()
    assert st.depth <= 200
    assert st.thinned > 0 and st.dropped > 0
    assert st.thinned + st.dropped + st.depth == 1000
    rows = box.db.conn.execute("SELECT seq, kind, stride FROM outbox ORDER BY seq").fetchall()
    assert [s for s, k, _ in rows if k == "sessions"] == kept  # nothing kept was lost
    strides = [stride for _, k, stride in rows if k == "telemetry"]
    assert max(strides) <= 4
    # Thinning works oldest first: surviving telemetry is coarser at the old end.
    assert strides == sorted(strides, reverse=True)
    # Counters survive a restart (health reports totals).
    box.db.conn.close()
    again = outbox(tmp_path / "db", max_rows=200)
    assert (again.stats().thinned, again.stats().dropped) == (st.thinned, st.dropped)


def test_byte_cap_applies_too(tmp_path):
    box = outbox(tmp_path / "db", max_rows=10**6, max_bytes=64 * 1024)
    box.append_many([sample(i) for i in range(1000)])
    assert box.stats().bytes <= 64 * 1024


def test_protected_kinds_are_never_dropped_even_over_the_cap(tmp_path):
    box = outbox(tmp_path / "db", max_rows=100)
    box.append_many([session(i) for i in range(150)])
    st = box.stats()
    assert st.depth == 150 and st.over_cap and st.dropped == 0


def test_failed_transaction_rolls_back_rows_and_counters(tmp_path):
    box = outbox(tmp_path / "db")
    box.append(sample(0))
    with pytest.raises(RuntimeError), box.transaction():
        box.append(sample(1))
        raise RuntimeError("boom")
    assert box.stats().depth == 1 and box.last_seq == 1
    assert box.append(sample(2)) == 2
