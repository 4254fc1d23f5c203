"""A depot's worth of chargers: the simulator serves more chargers than Modbus has unit ids,
each on its own TCP port (as behind several gateways), read over real loopback TCP."""

from __future__ import annotations

from hardware_sim import ManualClock, Simulator

from .helpers import run, tcp_client, u32

N = 300  # more than the 238 unit ids left after the meter, BMS and inverter


def test_more_chargers_than_unit_ids_each_answers_on_its_own_port() -> None:
    station = {
        "stationId": "depot",
        "gridCapacity": 30.0 * N,
        "chargers": [{"id": f"c{i + 1}", "maxPower": 22.0 + (i % 5), "connectors": 2,
                      "kind": "ac"} for i in range(N)],  # fmt: skip
    }

    async def body() -> None:
        async with Simulator(station, clock=ManualClock(), rtu_meter=False) as s:
            chargers = s.endpoints["chargers"]
            assert len(chargers) == N
            assert all(1 <= c["unit"] <= 247 for c in chargers.values())
            pairs = {(c["tcp"], c["unit"]) for c in chargers.values()}
            assert len(pairs) == N  # each charger reachable at its own address
            for cid in ("c1", "c239", "c240", f"c{N}"):  # both sides of the wrap
                ep = chargers[cid]
                c = await tcp_client(ep["tcp"])
                dev = (await c.read_holding_registers(0, count=2, device_id=ep["unit"])).registers
                i = int(cid[1:]) - 1
                assert u32(dev[0:2]) == (22 + i % 5) * 1000  # its own rating, W
                c.close()

    run(body)
