"""The demo's child processes: simulator, broker, agent.

Each child runs in its own session, so a Ctrl-C at the terminal reaches only the demo,
which then stops them in order (the agent first, so it can still write its fallback limits
to the simulated chargers). Each child also asks the kernel for SIGTERM when the demo dies
(prctl PR_SET_PDEATHSIG), so not even a SIGKILL of the demo leaves one behind.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1


class ChildError(RuntimeError):
    """A child failed to start or died; the message says which and why, in one line."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the demo already died before prctl took effect
        os._exit(1)


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The demo's environment without what would leak into its children: SEMS_* overrides
    (the generated config must be what runs) and the systemd notification variables (the
    demo's own service manager must not hear the agent)."""
    drop = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMS_") and k not in drop}
    env.update(extra or {})
    return env


class Child:
    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log: Path,
                 stdout: int | IO[bytes] | None = None) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("ab")
        try:
            self.proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else self._log_file, stderr=self._log_file,
                start_new_session=True, preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads yet
            )  # fmt: skip
        except OSError as exc:
            self._log_file.close()
            raise ChildError(f"{name}: cannot start {argv[0]}: {exc.strerror}") from None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 5) -> str:
        """The last lines of the child's log, for a one-glance error message."""
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; returns the exit status."""
        if self.running():
            self.proc.send_signal(signal.SIGCONT)  # in case it was stopped (Ctrl-Z)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log_file.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def sibling_script(name: str) -> str:
    """A console script of this installation (beside the interpreter), else from PATH."""
    here = Path(sys.executable).with_name(name)
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise ChildError(f"{name}: not found beside {sys.executable} nor on PATH")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)),
        None)  # fmt: skip


def start_broker(binary: str, workdir: Path, port: int, timeout_s: float = 10.0) -> Child:
    """A private Mosquitto on 127.0.0.1:`port`: anonymous, no persistence, logs in workdir."""
    conf = workdir / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
             f"log_dest file {workdir / 'mosquitto.log'}", "log_type error", "log_type warning"]
    if os.geteuid() == 0:  # as root Mosquitto drops to user "mosquitto", which cannot
        lines.append("user root")  # write the log in our temp dir
    conf.write_text("\n".join(lines) + "\n")
    broker = Child("mosquitto", [binary, "-c", str(conf)], env=child_environment(),
                   log=workdir / "mosquitto.stderr")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not broker.running():
            raise ChildError(f"mosquitto exited at start: {broker.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return broker
        except OSError:
            time.sleep(0.05)  # waiting for a child to listen, not control logic
    broker.stop()
    raise ChildError(f"mosquitto did not listen on 127.0.0.1:{port} within {timeout_s:g} s")


def start_simulator(station_file: Path, time_factor: float, workdir: Path, *,
                    random_evs: float = 0.0, profiles: tuple[str, ...] = (),
                    timeout_s: float = 30.0) -> tuple[Child, dict]:
    """`sems-sim` on `station_file`; returns it with its parsed ready line. `profiles`:
    DEVICE=PROFILE register maps, as `sems-sim --profile` takes them."""
    import json
    import selectors

    argv = [sibling_script("sems-sim"), "--station", str(station_file),
            "--time-factor", f"{time_factor:g}"]
    if random_evs > 0:
        argv += ["--random-evs", f"{random_evs:g}"]
    for choice in profiles:
        argv += ["--profile", choice]
    sim = Child("simulator", argv, env=child_environment(), log=workdir / "simulator.log",
                stdout=subprocess.PIPE)
    assert sim.proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(sim.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            sim.stop()
            raise ChildError(f"simulator: no ready line within {timeout_s:g} s")
    line = sim.proc.stdout.readline()
    try:
        ready = json.loads(line)
        if not ready.get("ready"):
            raise ValueError
    except ValueError:
        sim.stop()
        raise ChildError(f"simulator did not start: {sim.tail() or line.decode(errors='replace')}") from None
    return sim, ready
