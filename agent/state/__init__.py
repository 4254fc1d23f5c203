"""The running station's read model: implements the ports the local API (`ApiContext`) and
the uplink (`CommandTarget`) define, over the control loop (docs/architecture.md)."""
