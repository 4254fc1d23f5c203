"""A full disk under the uplink (issue 12, finding 6): the store's page cap reached, every
batch it refuses is dropped and counted in `dropped`, one ERROR line per episode (never a
traceback), health's store error set, and the seq stays gap-free for what is kept."""

from __future__ import annotations

import logging

from agent.uplink import Uplink
from agent.uplink.runner import sample
from tests.uplink.helpers import settings

MAX_PAGES = 60


def test_a_full_store_drops_counted_and_keeps_seq_gap_free(tmp_path, caplog):
    db = tmp_path / "station.db"
    up = Uplink.open(settings(1, station_id="st-1"), db, version="t", max_pages=MAX_PAGES)
    kept: list[int] = []
    refused = 0
    with caplog.at_level(logging.INFO, logger="agent.uplink"):
        for i in range(5000):  # bounded: the cap is reached long before
            seqs = up.publish_many([sample(i)])
            if not seqs:
                refused += 1
                if refused == 25:
                    break
            kept += seqs
    assert refused == 25 and kept, (refused, len(kept))
    assert up.store_error and "full" in up.store_error
    assert up.outbox.stats().dropped == 25
    errors = [r for r in caplog.records if "refuses messages" in r.getMessage()]
    assert len(errors) == 1 and errors[0].levelno == logging.ERROR and not errors[0].exc_info
    # Space returns (the broker acknowledged a backlog): the next message takes the next
    # seq after the last kept one, and the drop count is saved with it.
    up.outbox.conn.execute("DELETE FROM outbox WHERE seq <= ?", (kept[-1] // 2,))
    up.outbox.conn.commit()
    with caplog.at_level(logging.INFO, logger="agent.uplink"):
        (seq,) = up.publish_many([sample(1)])
    assert seq == kept[-1] + 1 and kept == list(range(1, kept[-1] + 1))
    assert up.store_error is None
    assert any("takes messages again (outbox.dropped = 25)" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    reopened = Uplink.open(settings(1, station_id="st-1"), db, version="t")
    assert reopened.outbox.stats().dropped == 25 and reopened.outbox.last_seq == seq
