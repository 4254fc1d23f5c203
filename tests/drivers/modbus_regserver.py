"""Test scaffolding: a real pymodbus server (TCP on loopback, or RTU on a pseudo-terminal)
serving register images the test writes, with switchable misbehaviour per unit id.

This is not a device model: it holds exactly the registers a test puts in it, so a test can
check the drivers' decoding and error handling against known bytes on a real socket.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tty
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice


@dataclass
class Unit:
    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    mode: str = "ok"  # ok | silent | exception | slow
    delay_s: float = 0.0
    writes: list[tuple[int, list[int]]] = field(default_factory=list)
    write_functions: list[int] = field(default_factory=list)  # Modbus function code per write

    def set(self, table: str, address: int, regs: list[int]) -> None:
        target = self.holding if table == "holding" else self.input
        for i, r in enumerate(regs):
            target[address + i] = r & 0xFFFF


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RegisterServer:
    """`async with RegisterServer({1: Unit(...)}) as srv:` then connect to srv.endpoint."""

    def __init__(self, units: dict[int, Unit], *, span: tuple[int, int] = (0, 1200),
                 rtu: bool = False, baudrate: int = 115200) -> None:
        self.units = units
        self.span = span
        self.rtu = rtu
        self.baudrate = baudrate
        self._release = asyncio.Event()
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self.bridge: PtyBridge | None = None
        self.endpoint = ""

    def _device(self, unit_id: int) -> SimDevice:
        lo, hi = self.span
        regs = [SimData(lo, values=[0] * (hi - lo), datatype=DataType.REGISTERS)]
        bits = [SimData(0, values=False, datatype=DataType.BITS)]
        return SimDevice(id=unit_id, simdata=(bits, list(bits), regs,
                                              [SimData(lo, values=[0] * (hi - lo), datatype=DataType.REGISTERS)]),
                         action=self._action(unit_id))

    def _action(self, unit_id: int):  # type: ignore[no-untyped-def]
        async def action(fc, start, address, count, current, set_values):  # type: ignore[no-untyped-def]
            unit = self.units[unit_id]
            if unit.mode == "silent":
                await self._release.wait()
                return ExcCodes.DEVICE_FAILURE
            if unit.mode == "exception":
                return ExcCodes.DEVICE_FAILURE
            if unit.delay_s:
                await asyncio.sleep(unit.delay_s)
            table = unit.input if fc == 4 else unit.holding
            if set_values is not None:
                unit.writes.append((address, list(set_values)))
                unit.write_functions.append(fc)
                unit.set("holding", address, list(set_values))
            for i in range(count):
                current[address - start + i] = table.get(address + i, 0)
            return None
        return action

    async def __aenter__(self) -> RegisterServer:
        devices = [self._device(uid) for uid in self.units]
        if self.rtu:
            self.bridge = PtyBridge()
            self.bridge.start()
            self._server = ModbusSerialServer(devices, framer=FramerType.RTU,
                                              port=self.bridge.server_path, baudrate=self.baudrate)
            self.endpoint = f"rtu://{self.bridge.client_path}?baudrate={self.baudrate}"
        else:
            port = free_port()
            self._server = ModbusTcpServer(devices, address=("127.0.0.1", port))
            self.endpoint = f"tcp://127.0.0.1:{port}"
        await self._server.serve_forever(background=True)
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        if self.bridge is not None:
            self.bridge.close()


class PtyBridge:
    """Two pseudo-terminal pairs joined back to back (what `socat pty pty` does): the client
    opens one slave, the server the other, and every byte crosses a real tty. Setting
    `corrupt` flips a bit in each frame from the server, as a noisy RS-485 line would."""

    def __init__(self) -> None:
        self._a_master, a_slave = os.openpty()
        self._b_master, b_slave = os.openpty()
        for fd in (self._a_master, a_slave, self._b_master, b_slave):
            tty.setraw(fd)
        self.client_path = os.ttyname(a_slave)
        self.server_path = os.ttyname(b_slave)
        self._slaves = (a_slave, b_slave)  # kept open so the ptys survive reopen/close cycles
        self.corrupt = False
        self.frames_corrupted = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self._a_master, self._pump, self._a_master, self._b_master, False)
        loop.add_reader(self._b_master, self._pump, self._b_master, self._a_master, True)

    def _pump(self, src: int, dst: int, from_server: bool) -> None:
        try:
            data = os.read(src, 4096)
        except OSError:
            return
        if from_server and self.corrupt and data:
            data = bytes([data[0] ^ 0x01]) + data[1:] if len(data) < 3 else data[:2] + bytes([data[2] ^ 0x55]) + data[3:]
            self.frames_corrupted += 1
        try:
            os.write(dst, data)
        except OSError:
            pass

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in (self._a_master, self._b_master):
            loop.remove_reader(fd)
        for fd in (self._a_master, self._b_master, *self._slaves):
            try:
                os.close(fd)
            except OSError:
                pass
