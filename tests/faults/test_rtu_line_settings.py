"""Found by the corrupted-RTU scenario: `[[devices]] baudrate/parity` were ignored and every
RS-485 line opened at the drivers' 19200 8N1 default (deaf to a 9600 baud bus)."""

from __future__ import annotations

from agent.config.settings import DeviceSettings
from agent.control.devices import line_endpoint


def device(endpoint: str, **kw) -> DeviceSettings:
    return DeviceSettings(name="m", kind="meter", profile="sim-meter", endpoint=endpoint, **kw)


def test_rtu_line_opens_with_the_configured_baudrate_and_parity():
    from drivers.endpoint import parse_endpoint

    ep = parse_endpoint(line_endpoint(device("rtu:///dev/ttyUSB0", baudrate=9600, parity="E")))
    assert (ep.device, ep.baudrate, ep.parity) == ("/dev/ttyUSB0", 9600, "E")
    assert parse_endpoint(line_endpoint(device("rtu:///dev/ttyUSB0"))).baudrate == 9600  # default


def test_options_in_the_url_and_tcp_endpoints_are_kept():
    url = "rtu:///dev/ttyUSB0?baudrate=38400&parity=N"
    assert line_endpoint(device(url, baudrate=9600)) == url
    assert line_endpoint(device("tcp://127.0.0.1:502")) == "tcp://127.0.0.1:502"
