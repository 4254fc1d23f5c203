"""Battery setpoints through SunSpec control models, for inverters without a vendor map.

Model 704 (DER AC controls): WSet is the active power setting in W, positive out of the
DER (discharging the battery), enabled with WSetEna = 1 and WSetMod = 1 (WATTS) - per the
model definition shipped with pysunspec2. Model 124 (basic storage controls): OutWRte and
InWRte are percentages of WChaMax, enabled by the discharge (bit 1) and charge (bit 0) bits
of StorCtl_Mod. 704 wins where a device has both: it states watts rather than a percentage
of a limit the device may change under us.
"""

from __future__ import annotations

from drivers.device import ModbusDevice, NotSupported

WSET_MODE_WATTS = 1
STORCTL_CHARGE = 1 << 0
STORCTL_DISCHARGE = 1 << 1


async def set_battery_setpoint(inv: ModbusDevice, kw: float) -> None:
    """Battery power setpoint in kW (> 0 discharges) on a SunSpec inverter."""
    targets = await inv._prepare()
    if "der_power_set" in targets:
        await inv.write_point("der_power_set", kw * 1000.0)
        await inv.write_point("der_power_set_mode", float(WSET_MODE_WATTS))
        await inv.write_point("der_power_set_enable", 1.0)
        return
    if "storage_discharge_rate" in targets and "storage_max_charge" in targets:
        values = await inv.read_values()
        w_max = values.get("storage_max_charge")
        if not isinstance(w_max, float) or w_max <= 0:
            raise NotSupported(f"{inv.name}: model 124 WChaMax is not set; cannot turn "
                               f"{kw} kW into a percentage")
        pct = min(100.0, abs(kw) * 1000.0 / w_max * 100.0)
        if kw >= 0:
            await inv.write_point("storage_discharge_rate", pct)
            await inv.write_point("storage_charge_rate", 0.0)
            mode = STORCTL_DISCHARGE
        else:
            await inv.write_point("storage_charge_rate", pct)
            await inv.write_point("storage_discharge_rate", 0.0)
            mode = STORCTL_CHARGE
        await inv.write_point("storage_control_mode", float(mode))
        return
    raise NotSupported(f"{inv.name}: neither SunSpec model 704 nor 124 found; no battery setpoint")
