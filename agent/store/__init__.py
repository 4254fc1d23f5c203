"""SQLite store: sessions, event log, uplink outbox, command replies, savings ledger."""

from agent.store.db import connect

__all__ = ["connect"]
