"""Shared types every layer may use: the injected clock and the cycle's frozen snapshot."""
