"""OCPP adapter: the agent as a local central system (OCPP 1.6J and 2.0.1) for chargers that
take their limits only through smart charging.

- settings: the [ocpp] section and each OCPP charger's entry live in agent/config/ocpp.py.
- `rates`: kW <-> the charger's rate unit (W, or A per phase rounded down to its step).
- `profiles`: the charging profiles the agent sends (TxProfile / TxDefaultProfile per
  connector, the charger-wide max profile that doubles as the offline fallback).
- `link16`, `link201`: one charge point's connection per protocol version (handlers for
  what the charger sends, the calls the agent makes), behind one `Link` interface.
- `charger`: `OcppCharger`, the same capability the control loop uses for Modbus chargers
  (read, set_limit, heartbeat, set_fallback, health), fed by the link.
- `server`: the WebSocket listener (`/ocpp/<id>`, subprotocol negotiation, allow list,
  basic auth, TLS) that hands each connection to its charger.
"""
