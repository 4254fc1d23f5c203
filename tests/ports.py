"""Free loopback ports for simulators started with a base port (several consecutive ports)."""

from __future__ import annotations

import random
import socket


def free_base_port(count: int = 6) -> int:
    """A first port with `count` free ports after it on loopback (checked by binding).
    Drawn below the kernel's ephemeral range (32768-60999 by default): a run of ports taken
    from that range can be handed to another process's outgoing connection before the
    simulator binds it (seen once: the simulator exited at start)."""
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(20000, 32000 - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no run of free loopback ports")
