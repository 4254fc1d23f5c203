"""Modbus servers for the emulated devices: TCP on loopback and RTU on a pseudo-terminal.

Why not pymodbus's own servers: in 3.16 a server built on SimDevice answers unknown unit
ids with an exception (`ignore_missing_devices` only applies to the deprecated context
path), which is wrong on a shared RS-485 line where other devices must hear silence; its
serial server opens a device path, while the simulator must serve the *master* side of a
pty; and faults (silence, dropped connections, bad CRC) need the transport in hand. So the
I/O here is our own, small, and the protocol itself stays pymodbus's: its framers decode
requests and build answers, its PDU classes validate requests and run them against
`DeviceDatastore`, an implementation of the datastore interface they call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import tty
from collections.abc import Iterable
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU

from .devices import EmulatedDevice

log = logging.getLogger("hardware_sim.modbus")

READ_TABLE = {3: "holding", 4: "input", 6: "holding", 16: "holding", 23: "holding"}
WRITE_CODES = {6, 16, 23}
MAX_FRAME = 260


class DeviceDatastore:
    """The datastore interface pymodbus's request PDUs call, over one device's image."""

    def __init__(self, device: EmulatedDevice, rng: random.Random) -> None:
        self.device = device
        self.rng = rng

    async def async_getValues(self, device_id: int, func_code: int, address: int,
                              count: int = 1) -> list[int] | ExcCodes:
        table = READ_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        words = self.device.image.read(device_id, table, address, count)
        if words is None:
            return ExcCodes.ILLEGAL_ADDRESS
        fault = self.device.fault
        if fault is not None and fault.kind == "garbage":
            if fault.mode == "nan":  # all ones: NaN as float32/float64 in any word order
                return [0xFFFF] * count
            return [self.rng.randrange(0x10000) for _ in range(count)]
        return words

    async def async_setValues(self, device_id: int, func_code: int, address: int,
                              values: Iterable[int]) -> ExcCodes | None:
        if func_code not in WRITE_CODES:
            return ExcCodes.ILLEGAL_FUNCTION
        ok = self.device.write(address, list(values), device_id)
        return None if ok else ExcCodes.ILLEGAL_ADDRESS


class Responder:
    """Answers request PDUs for the unit ids it owns; None means stay silent."""

    def __init__(self, devices: Iterable[EmulatedDevice], seed: int = 0) -> None:
        rng = random.Random(seed)
        # a device may answer on several unit ids (Alfen: one per socket, 200 for the station)
        self.devices = {unit: d for d in devices for unit in d.units}
        stores = {id(d): DeviceDatastore(d, rng) for d in self.devices.values()}
        self.stores = {unit: stores[id(d)] for unit, d in self.devices.items()}

    def owns(self, unit: int) -> bool:
        return unit in self.devices

    async def answer(self, pdu: ModbusPDU) -> ModbusPDU | None:
        device = self.devices.get(pdu.dev_id)
        if device is None:  # not ours (unit 0 broadcast included): silence, as on RS-485
            return None
        fault = device.fault
        if fault is not None:
            if fault.kind in ("silent", "drop"):
                return None
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)  # emulates a slow device, not control logic
        if fault is not None and fault.kind == "exception":
            response: ModbusPDU = ExceptionResponse(pdu.function_code, fault.code)
        elif pdu.function_code not in READ_TABLE:
            response = ExceptionResponse(pdu.function_code, ExcCodes.ILLEGAL_FUNCTION)
        else:
            try:
                # DeviceDatastore provides the two methods the PDUs call (duck-typed).
                store: Any = self.stores[pdu.dev_id]
                response = await pdu.datastore_update(store, pdu.dev_id)
            except Exception:  # a bad request must never take the server down
                log.exception("request failed on %s", device.name)
                response = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
        response.dev_id = pdu.dev_id
        response.transaction_id = pdu.transaction_id
        return response

    def corrupts(self, unit: int) -> bool:
        device = self.devices.get(unit)
        return device is not None and device.fault is not None and device.fault.kind == "corrupt"


class TcpEndpoint:
    """Modbus TCP server on one loopback port; `drop()` closes and refuses connections."""

    def __init__(self, responder: Responder, host: str = "127.0.0.1", port: int = 0) -> None:
        self.responder = responder
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._reopen: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]  # fixed from now on

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._reopen:
            self._reopen.cancel()
        await self._close_all()

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        self._server = None

    async def drop(self, duration: float) -> None:
        """Close every connection and refuse new ones for `duration` wall-clock seconds."""
        await self._close_all()
        loop = asyncio.get_running_loop()
        if self._reopen:
            self._reopen.cancel()
        self._reopen = loop.call_later(duration, lambda: loop.create_task(self._restart()))

    async def _restart(self) -> None:
        self._reopen = None
        if self._server is None:
            await self.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        framer = FramerSocket(DecodePDU(True))
        buffer = b""
        try:
            while chunk := await reader.read(1024):
                buffer += chunk
                while buffer:
                    if buffer[2:4] not in (b"", b"\0", b"\0\0"):
                        return  # not Modbus (protocol id != 0): hang up like a real gateway
                    try:
                        used, pdu = framer.handleFrame(buffer, 0, 0)
                    except ModbusIOException as exc:  # undecodable function code
                        used = len(buffer)
                        pdu = ExceptionResponse(exc.fcode or 0, ExcCodes.ILLEGAL_FUNCTION)
                        pdu.dev_id, pdu.transaction_id = exc.dev_id, exc.transaction_id
                        if self.responder.owns(pdu.dev_id):
                            writer.write(framer.buildFrame(pdu))
                        buffer = buffer[used:]
                        continue
                    if pdu is None:
                        if len(buffer) > MAX_FRAME:
                            return  # never a frame: a confused client, hang up
                        break
                    buffer = buffer[used:]
                    response = await self.responder.answer(pdu)
                    if response is not None and not writer.is_closing():
                        writer.write(framer.buildFrame(response))
                        await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


class RtuLine:
    """Modbus RTU on a pseudo-terminal: served on the master side; clients open `path`."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.master, self.slave = os.openpty()
        # Raw mode: no echo of the responses back to us, no newline translation.
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)  # kept open so the line never hangs up
        self._framer = FramerRTU(DecodePDU(True))
        self._buffer = b""
        self._queue: asyncio.Queue[ModbusPDU] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.master, self._on_readable)
        self._task = loop.create_task(self._answer_loop())

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.master)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.master, 1024)
        except (BlockingIOError, OSError):
            return
        self._buffer += data
        while self._buffer:
            try:
                used, pdu = self._framer.handleFrame(self._buffer, 0, 0)
            except ModbusIOException:
                self._buffer = b""  # unknown function code: drop the frame, as a device would
                return
            if pdu is None:
                if used:
                    self._buffer = self._buffer[used:]  # bad CRC / garbage consumed
                    continue
                if len(self._buffer) > MAX_FRAME:
                    self._buffer = b""
                return
            self._buffer = self._buffer[used:]
            self._queue.put_nowait(pdu)

    async def _answer_loop(self) -> None:
        while True:  # one request at a time, as on a half-duplex bus
            pdu = await self._queue.get()
            response = await self.responder.answer(pdu)
            if response is None:
                continue
            frame = self._framer.buildFrame(response)
            if self.responder.corrupts(pdu.dev_id):
                frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])  # flip the CRC's last byte
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self.master, frame)
