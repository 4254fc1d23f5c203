"""The control loop: read -> snapshot -> decide -> safe apply -> record -> watchdog.

Modules, one concern each: `devices` (the station's devices and the concurrent reads),
`budget` (what the allocator may count on, including degraded modes), `caps`
(measured-consumption caps and paused-session rotation), `sessions` (the session tracker),
`v2g` (which sessions discharge), `apply` (safe ordering, headroom and deadband of limit
writes) with `residues` (increases under the deadband wanted long enough), `decision` (the typed output of one cycle), `controller` (snapshot in, decision
out, no I/O), `loop` (the cycle's phases: read, decide, write, record), `events` (the
event log; the loop records each cycle into the read model, agent/state), `stats` (cycle
statistics), `phase_learning` (an EV's phase count), `phase_switch` (when to switch a
charger between 1 and 3 phases) with `switch_fit` (the allocator asked whether it fits).
The snapshot type lives in agent/model/snapshot.py.
"""
