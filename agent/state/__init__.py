"""The one read model of the running station (`station_state.StationState`): what the
local API, the uplink, `/metrics` and systemd's status line read, recorded by the control
loop once per cycle; and the command port (`StationCommands`) the adapters act through
(docs/architecture.md)."""
