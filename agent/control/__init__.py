"""The control loop: read -> snapshot -> allocate -> safe apply -> record -> watchdog.

Modules, one concern each: `snapshot` (the cycle's frozen process image), `budget` (what
the allocator may count on, including degraded modes), `caps` (measured-consumption caps
and paused-session rotation), `apply` (safe ordering, headroom and deadband of limit
writes), `stats` (cycle statistics), `loop` (the controller and the periodic task).
"""
