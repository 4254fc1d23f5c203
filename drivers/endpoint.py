"""Endpoint URLs: `tcp://host:port` and `rtu:///dev/ttyX?baudrate=19200&parity=N&stopbits=1`."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit


class EndpointError(ValueError):
    """An endpoint string that cannot be used; the message names the bad part."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    scheme: str  # "tcp" or "rtu"
    host: str = ""  # tcp
    port: int = 502  # tcp
    device: str = ""  # rtu: serial device path
    baudrate: int = 19200
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8

    @property
    def url(self) -> str:
        if self.scheme == "tcp":
            return f"tcp://{self.host}:{self.port}"
        return (f"rtu://{self.device}?baudrate={self.baudrate}&parity={self.parity}"
                f"&stopbits={self.stopbits}&bytesize={self.bytesize}")

    @property
    def is_serial(self) -> bool:
        return self.scheme == "rtu"

    def __str__(self) -> str:
        return self.url


def parse_endpoint(text: str | Endpoint) -> Endpoint:
    if isinstance(text, Endpoint):
        return text
    parts = urlsplit(text.strip())
    if parts.scheme == "tcp":
        if not parts.hostname:
            raise EndpointError(f"endpoint {text!r}: missing host (tcp://host:port)")
        try:
            port = parts.port or 502
        except ValueError:
            raise EndpointError(f"endpoint {text!r}: port must be 1..65535") from None
        return Endpoint("tcp", host=parts.hostname, port=port)
    if parts.scheme == "rtu":
        if not parts.path:
            raise EndpointError(f"endpoint {text!r}: missing serial device (rtu:///dev/ttyUSB0)")
        opts = dict(parse_qsl(parts.query))
        unknown = set(opts) - {"baudrate", "parity", "stopbits", "bytesize"}
        if unknown:
            raise EndpointError(f"endpoint {text!r}: unknown option(s) {sorted(unknown)}")
        parity = opts.get("parity", "N").upper()
        if parity not in ("N", "E", "O"):
            raise EndpointError(f"endpoint {text!r}: parity must be N, E or O")
        try:
            baud = int(opts.get("baudrate", 19200))
            stopbits = int(opts.get("stopbits", 1))
            bytesize = int(opts.get("bytesize", 8))
        except ValueError:
            raise EndpointError(f"endpoint {text!r}: baudrate/stopbits/bytesize must be integers") from None
        if stopbits not in (1, 2) or bytesize not in (7, 8) or baud <= 0:
            raise EndpointError(f"endpoint {text!r}: stopbits 1|2, bytesize 7|8, baudrate > 0")
        return Endpoint("rtu", device=parts.path, baudrate=baud, parity=parity,
                        stopbits=stopbits, bytesize=bytesize)
    raise EndpointError(f"endpoint {text!r}: scheme must be tcp:// or rtu://")
