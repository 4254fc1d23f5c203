"""The composition root: the daemon, its wiring, reload, sd_notify and memory hand-back."""
