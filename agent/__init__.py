"""sems-edge agent: the station daemon, its store, uplink, local API and the `sems` CLI."""
