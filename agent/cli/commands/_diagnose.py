"""Why a Modbus device cannot be reached, in a technician's words, with the next command.

The drivers' transport reports a failed connect as "cannot connect" (pymodbus swallows the
socket error) and a silent unit as a timeout. When a one-shot command fails, this module
looks again with plain sockets, once: refused, timed out, no route, unknown host, a peer
that is not Modbus TCP, or a unit id nobody answers to. It never retries in a loop.
"""

from __future__ import annotations

import errno
import socket
import struct
from urllib.parse import urlsplit

# Modbus TCP: transaction 0x5345 ("SE"), protocol 0, length 6, unit, read holding 0, count 1.
_TRANSACTION = 0x5345


def _request(unit: int) -> bytes:
    return struct.pack(">HHHBBHH", _TRANSACTION, 0, 6, unit, 3, 0, 1)


def explain(endpoint: str, unit: int, error: str, timeout_s: float = 1.0) -> tuple[str, str]:
    """(why, next step) for a failed request to `unit` at `endpoint`; `error` is what the
    transport said (kept when nothing better is found)."""
    url = urlsplit(endpoint)
    if url.scheme == "rtu":
        return _explain_rtu(url.path, unit, error)
    host, port = url.hostname or "", url.port or 502
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except socket.gaierror:
        return (f"unknown host {host!r} (name does not resolve)",
                "check the endpoint's address in the settings")
    except TimeoutError:
        return (f"no answer to a TCP connect to {host}:{port} within {timeout_s:g} s "
                "(wrong address, device off, or a firewall)", f"ping {host}")
    except OSError as exc:
        return _socket_error(exc, host, port)
    with sock:
        try:
            sock.settimeout(timeout_s)
            sock.sendall(_request(unit))
            answer = sock.recv(256)
        except TimeoutError:
            return (f"{host}:{port} accepts connections but unit {unit} does not answer "
                    "(wrong unit id?)", f"sems scan --tcp {host}:{port}")
        except OSError as exc:
            return _socket_error(exc, host, port)
    if not answer:
        return (f"{host}:{port} closed the connection at the first Modbus request "
                f"(unit {unit} refused, or the port is not Modbus TCP)",
                f"sems scan --tcp {host}:{port}")
    if len(answer) < 8 or struct.unpack(">HH", answer[:4]) != (_TRANSACTION, 0):
        shown = answer[:24].decode("ascii", "replace").encode("unicode_escape").decode()
        return (f"{host}:{port} does not speak Modbus TCP (it answered {shown!r}): wrong port "
                "or wrong protocol", "check the port in the device's manual")
    return (error, f"sems read --tcp {host}:{port} --unit {unit} 0")


def _socket_error(exc: OSError, host: str, port: int) -> tuple[str, str]:
    if exc.errno == errno.ECONNREFUSED:
        return (f"connection refused by {host}:{port} (nothing listens there: wrong port, "
                "or the device's Modbus TCP server is off)", "check the port and the device")
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return (f"no route to {host} (wrong address or network, cable unplugged)",
                f"ip route get {host}")
    return f"{host}:{port}: {exc.strerror or exc}", f"ping {host}"


def _explain_rtu(path: str, unit: int, error: str) -> tuple[str, str]:
    import os

    if not os.path.exists(path):
        return (f"no serial device {path} (adapter unplugged or another name)",
                "ls /dev/serial/by-id/")
    if not os.access(path, os.R_OK | os.W_OK):
        return (f"permission denied on {path} (is your user in the dialout group?)",
                f"ls -l {path}")
    return (f"unit {unit} does not answer on {path}: {error} (wrong unit id, baud rate, "
            "parity or A/B wiring?)", f"sems scan --rtu {path}")
