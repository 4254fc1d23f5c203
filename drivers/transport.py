"""One Modbus connection per endpoint, shared by every unit id behind it.

A `Bus` owns one pymodbus async client. Requests on a bus are serialised by an asyncio.Lock
(required on RS-485, harmless on TCP where pymodbus would serialise anyway). Each request has
its own timeout and a bounded number of retries; a lost connection is re-opened on demand
with exponential backoff, so a dead endpoint costs a caller nothing but an immediate
"disconnected" error until its next attempt is due. pymodbus's own reconnect loop is
disabled (reconnect_delay=0): the bus decides when to reconnect, not a background task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from drivers.endpoint import Endpoint, parse_endpoint

log = logging.getLogger(__name__)

EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "device failure", 5: "acknowledge", 6: "device busy", 10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class TransportError(Exception):
    """A request that got no usable answer. `kind` is timeout, exception or disconnected."""

    def __init__(self, kind: str, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code


class Bus:
    """A shared Modbus connection (TCP socket or serial line)."""

    def __init__(self, endpoint: str | Endpoint, *, connect_timeout_s: float = 1.0,
                 backoff_initial_s: float = 0.2, backoff_max_s: float = 10.0,
                 timeouts_before_reconnect: int = 3,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoint = parse_endpoint(endpoint)
        self.connect_timeout_s = connect_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.timeouts_before_reconnect = timeouts_before_reconnect
        self._clock = clock
        self._lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._backoff = 0.0
        self._next_connect_at = 0.0
        self._timeouts_in_row = 0
        self._closed = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.requests = 0

    # -- connection -------------------------------------------------------------------
    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        ep = self.endpoint
        # pymodbus' own timeout only bounds connect and acts as a backstop: requests are
        # bounded by asyncio.timeout below, retries are ours, auto-reconnect is off.
        if ep.is_serial:
            return AsyncModbusSerialClient(
                ep.device, framer=FramerType.RTU, baudrate=ep.baudrate, parity=ep.parity,
                stopbits=ep.stopbits, bytesize=ep.bytesize, timeout=self.connect_timeout_s,
                retries=0, reconnect_delay=0,
            )
        return AsyncModbusTcpClient(ep.host, port=ep.port, timeout=self.connect_timeout_s,
                                    retries=0, reconnect_delay=0)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def _ensure_connected(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        if self._closed:
            raise TransportError("disconnected", f"{self.endpoint}: bus closed")
        if self._client is not None and self._client.connected:
            return self._client
        now = self._clock()
        if now < self._next_connect_at:
            raise TransportError(
                "disconnected",
                f"{self.endpoint}: not connected (next attempt in {self._next_connect_at - now:.1f} s)")
        if self._client is not None:
            self._client.close()
        self._client = self._make_client()
        ok = False
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                ok = await self._client.connect()
        except (TimeoutError, OSError):
            ok = False
        if not ok or not self._client.connected:
            self._backoff = min(self.backoff_max_s, max(self.backoff_initial_s, self._backoff * 2))
            self._next_connect_at = self._clock() + self._backoff
            self._client.close()
            raise TransportError("disconnected", f"{self.endpoint}: cannot connect")
        self._backoff = 0.0
        self._timeouts_in_row = 0
        log.info("connected to %s", self.endpoint)
        return self._client

    async def close(self) -> None:
        self._closed = True
        if self._client is not None:
            self._client.close()
            self._client = None
        if _registry.get(self.endpoint.url) is self:
            del _registry[self.endpoint.url]

    # -- requests ---------------------------------------------------------------------
    async def read(self, unit_id: int, table: str, address: int, count: int, *,
                   timeout_s: float, retries: int = 0) -> list[int]:
        def call(client: AsyncModbusTcpClient | AsyncModbusSerialClient):  # type: ignore[no-untyped-def]
            if table == "input":
                return client.read_input_registers(address, count=count, device_id=unit_id)
            return client.read_holding_registers(address, count=count, device_id=unit_id)

        response = await self._request(call, unit_id, f"read {table} {address}+{count}",
                                       timeout_s, retries)
        regs = list(response.registers)
        if len(regs) != count:
            raise TransportError("exception", f"{self.endpoint} unit {unit_id}: asked {count} "
                                 f"registers at {address}, got {len(regs)}")
        return regs

    async def write(self, unit_id: int, address: int, values: Sequence[int], *,
                    timeout_s: float, retries: int = 1, function: int = 16) -> None:
        """Function 16 (write multiple registers), or 6 (write single register) for devices
        that accept only that, e.g. Keba P30 and ABB Terra AC."""
        if function == 6 and len(values) != 1:
            raise ValueError("function 6 writes exactly one register")

        def call(client: AsyncModbusTcpClient | AsyncModbusSerialClient):  # type: ignore[no-untyped-def]
            if function == 6:
                return client.write_register(address, values[0], device_id=unit_id)
            return client.write_registers(address, list(values), device_id=unit_id)

        await self._request(call, unit_id, f"write {address}+{len(values)}", timeout_s, retries)

    async def _request(self, call, unit_id: int, what: str, timeout_s: float, retries: int):  # type: ignore[no-untyped-def]
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        async with self._lock:
            last: TransportError | None = None
            for _attempt in range(retries + 1):
                client = await self._ensure_connected()
                self.requests += 1
                try:
                    async with asyncio.timeout(timeout_s):
                        response = await call(client)
                except TimeoutError:
                    if not client.connected:  # the peer closed while we waited
                        last = TransportError("disconnected", f"{self.endpoint}: {what}: connection lost")
                        continue
                    last = TransportError("timeout", f"{self.endpoint} unit {unit_id}: {what}: "
                                          f"no answer within {timeout_s * 1000:.0f} ms")
                    self._note_timeout()
                    continue
                except ModbusException as exc:
                    # ConnectionException and ModbusIOException: a dropped or garbled link.
                    if not client.connected:
                        last = TransportError("disconnected", f"{self.endpoint}: {what}: connection lost")
                    else:
                        last = TransportError("timeout", f"{self.endpoint} unit {unit_id}: {what}: {exc}")
                        self._note_timeout()
                    continue
                except OSError as exc:
                    client.close()
                    last = TransportError("disconnected", f"{self.endpoint}: {what}: {exc}")
                    continue
                self._timeouts_in_row = 0
                if response.isError():
                    code = getattr(response, "exception_code", None)
                    name = EXCEPTION_NAMES.get(code or 0, "unknown")
                    raise TransportError("exception", f"{self.endpoint} unit {unit_id}: {what}: "
                                         f"Modbus exception {code} ({name})", code)
                return response
            assert last is not None
            raise last

    def _note_timeout(self) -> None:
        # A run of timeouts across every unit on this endpoint suggests a half-open TCP
        # connection; drop it so the next request reconnects. On a serial line a timeout
        # says nothing about the port, so the line stays open.
        self._timeouts_in_row += 1
        if (not self.endpoint.is_serial and self._client is not None
                and self._timeouts_in_row >= self.timeouts_before_reconnect):
            log.warning("%s: %d timeouts in a row, reconnecting", self.endpoint, self._timeouts_in_row)
            self._client.close()
            self._timeouts_in_row = 0


_registry: dict[str, Bus] = {}


def open_endpoint(endpoint: str | Endpoint, **kwargs: float) -> Bus:
    """The shared Bus for an endpoint (created on first use), so devices behind one gateway
    or on one RS-485 line share its connection and lock."""
    ep = parse_endpoint(endpoint)
    bus = _registry.get(ep.url)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if bus is None or bus._closed or (bus.loop is not None and loop is not None and bus.loop is not loop):
        bus = Bus(ep, **kwargs)  # type: ignore[arg-type]
        _registry[ep.url] = bus
    return bus
