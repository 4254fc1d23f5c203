"""OCPP 1.6J toward one charge point: handlers for what it sends, the agent's calls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

from agent.ocpp.link import TracedMixin, Traffic, parse_sampled

if TYPE_CHECKING:
    from agent.ocpp.charger import OcppCharger

# 1.6 connector status -> IEC 61851 state as the session tracker reads it.
STATUS_TO_IEC = {
    "Available": "A", "Reserved": "A", "Preparing": "B", "Charging": "C", "SuspendedEV": "B",
    "SuspendedEVSE": "B", "Finishing": "B", "Unavailable": "E", "Faulted": "F",
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Link16(TracedMixin, ChargePoint):
    version = "1.6"

    def __init__(self, cp_id: str, connection: Any, charger: OcppCharger, traffic: Traffic,
                 timeout_s: float) -> None:
        super().__init__(cp_id, connection, response_timeout=timeout_s)
        self.charger = charger
        self.traffic = traffic
        self.timeout_s = timeout_s

    # ---- the charger's calls -------------------------------------------------------------
    @on(Action.boot_notification)
    def on_boot(self, charge_point_vendor: str, charge_point_model: str, **kw: Any):
        self.charger.on_boot({"vendor": charge_point_vendor, "model": charge_point_model,
                              **{k: v for k, v in kw.items() if isinstance(v, str)}})
        return call_result.BootNotification(current_time=_now(),
                                            interval=self.charger.ocpp.heartbeat_interval_s,
                                            status="Accepted")

    @after(Action.boot_notification)
    def after_boot(self, **_: Any) -> None:
        self.charger.booted()

    @on(Action.heartbeat)
    def on_heartbeat(self):
        self.charger.on_heartbeat()
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)
    def on_status(self, connector_id: int, error_code: str, status: str, **_: Any):
        if connector_id > 0:
            self.charger.on_status(connector_id, STATUS_TO_IEC.get(status, "?"), status)
        return call_result.StatusNotification()

    @on(Action.meter_values)
    def on_meter_values(self, connector_id: int, meter_value: list, **_: Any):
        for mv in meter_value:
            self.charger.on_meter(connector_id, parse_sampled(mv.get("sampled_value", [])))
        return call_result.MeterValues()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str):
        return call_result.Authorize(id_tag_info={"status": self._tag_status(id_tag)})

    @on(Action.start_transaction)
    def on_start(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str,
                 **_: Any):
        status = self._tag_status(id_tag)
        tx_id = self.charger.new_transaction_id()
        if status == "Accepted":
            self.charger.on_tx_started(connector_id, tx_id, meter_start / 1000.0, id_tag)
        return call_result.StartTransaction(transaction_id=tx_id, id_tag_info={"status": status})

    @after(Action.start_transaction)
    def after_start(self, connector_id: int, **_: Any) -> None:
        self.charger.profile_due(connector_id)

    @on(Action.stop_transaction)
    def on_stop(self, meter_stop: int, timestamp: str, transaction_id: int, **kw: Any):
        self.charger.on_tx_ended(transaction_id, meter_stop / 1000.0)
        for mv in kw.get("transaction_data") or []:
            self.charger.on_meter(None, parse_sampled(mv.get("sampled_value", [])))
        return call_result.StopTransaction()

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any):
        # Vendor extensions mean nothing to the agent: refused politely, per the spec.
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.security_event_notification)
    def on_security_event(self, type: str, timestamp: str, **kw: Any):  # noqa: A002
        self.charger.on_security_event(type, kw.get("tech_info"))
        return call_result.SecurityEventNotification()

    @on(Action.diagnostics_status_notification)
    def on_diagnostics(self, status: str):
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_firmware(self, status: str):
        self.charger.firmware_status = status
        return call_result.FirmwareStatusNotification()

    def _tag_status(self, id_tag: str) -> str:
        return "Accepted" if self.charger.authorized(id_tag) else "Invalid"

    # ---- the agent's calls ---------------------------------------------------------------
    async def set_connector_limit(self, idx: int, profile: dict) -> str:
        answer = await self.timed_call(
            call.SetChargingProfile(connector_id=idx, cs_charging_profiles=profile))
        return answer.status

    async def set_max_profile(self, profile: dict) -> str:
        answer = await self.timed_call(
            call.SetChargingProfile(connector_id=0, cs_charging_profiles=profile))
        return answer.status

    async def composite(self, idx: int, duration_s: int, unit: str) -> list[dict] | None:
        answer = await self.timed_call(call.GetCompositeSchedule(
            connector_id=idx, duration=duration_s, charging_rate_unit=unit))
        if answer.status != "Accepted" or not answer.charging_schedule:
            return None
        return [{"startPeriod": p["start_period"], "limit": p["limit"]}
                for p in answer.charging_schedule.get("charging_schedule_period", [])]

    async def read_rate_unit(self) -> str | None:
        answer = await self.timed_call(
            call.GetConfiguration(key=["ChargingScheduleAllowedChargingRateUnit"]))
        for item in answer.configuration_key or []:
            if item.get("key") == "ChargingScheduleAllowedChargingRateUnit":
                return item.get("value")
        return None

    async def read_phase_switching(self, evses: int) -> tuple[bool | None, frozenset[int]]:
        """1.6 has no standard configuration key for it: the charger's `phase_switching`
        setting decides (OcppCharger)."""
        return None, frozenset()

    async def set_meter_interval(self, seconds: int) -> None:
        await self.timed_call(call.ChangeConfiguration(key="MeterValueSampleInterval",
                                                       value=str(seconds)))

    async def trigger_meter_values(self, idx: int) -> str:
        answer = await self.timed_call(call.TriggerMessage(requested_message="MeterValues",
                                                           connector_id=idx))
        return answer.status
