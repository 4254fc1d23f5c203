"""OCPP 2.0.1 toward one charging station: handlers for what it sends, the agent's calls.
EVSE ids play the part of 1.6 connector ids (one connector per EVSE)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action

from agent.ocpp.link import TracedMixin, Traffic, parse_sampled

if TYPE_CHECKING:
    from agent.ocpp.charger import OcppCharger

CONNECTOR_TO_IEC = {"Available": "A", "Reserved": "A", "Occupied": "B", "Unavailable": "E",
                    "Faulted": "F"}
CHARGING_TO_IEC = {"Charging": "C", "EVConnected": "B", "SuspendedEV": "B",
                   "SuspendedEVSE": "B"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Link201(TracedMixin, ChargePoint):
    version = "2.0.1"

    def __init__(self, cp_id: str, connection: Any, charger: OcppCharger, traffic: Traffic,
                 timeout_s: float) -> None:
        super().__init__(cp_id, connection, response_timeout=timeout_s)
        self.charger = charger
        self.traffic = traffic
        self.timeout_s = timeout_s
        self._tx_evse: dict[str, int] = {}

    # ---- the station's calls -------------------------------------------------------------
    @on(Action.boot_notification)
    def on_boot(self, charging_station: dict, reason: str, **_: Any):
        info = {k: v for k, v in charging_station.items() if isinstance(v, str)}
        self.charger.on_boot({**info, "reason": reason})
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
    def on_status(self, timestamp: str, connector_status: str, evse_id: int, connector_id: int,
                  **_: Any):
        if evse_id > 0:
            self.charger.on_status(evse_id, CONNECTOR_TO_IEC.get(connector_status, "?"),
                                   connector_status)
        return call_result.StatusNotification()

    @on(Action.meter_values)
    def on_meter_values(self, evse_id: int, meter_value: list, **_: Any):
        for mv in meter_value:
            self.charger.on_meter(evse_id or None, parse_sampled(mv.get("sampled_value", [])))
        return call_result.MeterValues()

    @on(Action.authorize)
    def on_authorize(self, id_token: dict, **_: Any):
        return call_result.Authorize(id_token_info={"status": self._token_status(id_token)})

    @on(Action.transaction_event)
    def on_transaction_event(self, event_type: str, timestamp: str, trigger_reason: str,
                             seq_no: int, transaction_info: dict, **kw: Any):
        tx_id = transaction_info["transaction_id"]
        evse = kw.get("evse") or {}
        idx = evse.get("id") or self._tx_evse.get(tx_id)
        result: dict[str, Any] = {}
        token = kw.get("id_token")
        status = self._token_status(token) if token else "Accepted"
        if token:
            result["id_token_info"] = {"status": status}
        samples = [parse_sampled(mv.get("sampled_value", [])) for mv in kw.get("meter_value") or []]
        if idx is None:
            return call_result.TransactionEvent(**result)
        if event_type == "Started" or (event_type == "Updated" and tx_id not in self._tx_evse):
            self._tx_evse[tx_id] = idx
            start = next((s["energy_kwh"] for s in samples if "energy_kwh" in s), None)
            self.charger.on_tx_started(idx, tx_id, start, (token or {}).get("id_token"))
        for s in samples:
            self.charger.on_meter(idx, s)
        state = CHARGING_TO_IEC.get(transaction_info.get("charging_state", ""))
        if state is not None and event_type != "Ended":
            self.charger.on_status(idx, state, transaction_info["charging_state"])
        if event_type == "Ended":
            self._tx_evse.pop(tx_id, None)
            self.charger.on_tx_ended(tx_id, None)
        return call_result.TransactionEvent(**result)

    @after(Action.transaction_event)
    def after_transaction_event(self, event_type: str, transaction_info: dict, **kw: Any) -> None:
        if event_type == "Started":
            idx = (kw.get("evse") or {}).get("id") or self._tx_evse.get(
                transaction_info["transaction_id"])
            if idx is not None:
                self.charger.profile_due(idx)

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any):
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.security_event_notification)
    def on_security_event(self, type: str, timestamp: str, **kw: Any):  # noqa: A002
        self.charger.on_security_event(type, kw.get("tech_info"))
        return call_result.SecurityEventNotification()

    @on(Action.notify_report)
    def on_notify_report(self, request_id: int, generated_at: str, seq_no: int, **kw: Any):
        self.charger.report.extend(kw.get("report_data") or [])
        return call_result.NotifyReport()

    @on(Action.notify_ev_charging_needs)
    def on_ev_charging_needs(self, charging_needs: dict, evse_id: int, **_: Any):
        self.charger.on_ev_needs(evse_id, _ev_max_kw(charging_needs))
        # The agent sets limits itself; the EV's schedule wish is noted, not negotiated.
        return call_result.NotifyEVChargingNeeds(status="Accepted")

    @on(Action.notify_event)
    def on_notify_event(self, generated_at: str, seq_no: int, event_data: list, **_: Any):
        return call_result.NotifyEvent()

    @on(Action.firmware_status_notification)
    def on_firmware(self, status: str, **_: Any):
        self.charger.firmware_status = status
        return call_result.FirmwareStatusNotification()

    @on(Action.log_status_notification)
    def on_log_status(self, status: str, **_: Any):
        return call_result.LogStatusNotification()

    @on(Action.notify_charging_limit)
    def on_charging_limit(self, charging_limit: dict, **_: Any):
        return call_result.NotifyChargingLimit()

    def _token_status(self, token: dict | None) -> str:
        tag = (token or {}).get("id_token", "")
        return "Accepted" if self.charger.authorized(tag) else "Invalid"

    # ---- the agent's calls ---------------------------------------------------------------
    async def set_connector_limit(self, idx: int, profile: dict) -> str:
        answer = await self.timed_call(
            call.SetChargingProfile(evse_id=idx, charging_profile=profile))
        return answer.status

    async def set_max_profile(self, profile: dict) -> str:
        answer = await self.timed_call(
            call.SetChargingProfile(evse_id=0, charging_profile=profile))
        return answer.status

    async def composite(self, idx: int, duration_s: int, unit: str) -> list[dict] | None:
        answer = await self.timed_call(call.GetCompositeSchedule(
            duration=duration_s, evse_id=idx, charging_rate_unit=unit))
        if answer.status != "Accepted" or not answer.schedule:
            return None
        return [{"startPeriod": p["start_period"], "limit": p["limit"]}
                for p in answer.schedule.get("charging_schedule_period", [])]

    async def read_rate_unit(self) -> str | None:
        answer = await self.timed_call(call.GetVariables(get_variable_data=[
            {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "RateUnit"}}]))
        for r in answer.get_variable_result:
            if r.get("attribute_status") == "Accepted":
                return r.get("attribute_value")
        return None

    async def read_phase_switching(self, evses: int) -> tuple[bool | None, frozenset[int]]:
        """(SmartChargingCtrlr.Phases3to1: it can switch from 3 to 1 phase during a
        transaction, None when it does not say; the EVSEs whose ACPhaseSwitchingSupported is
        true: they take phaseToUse). OCPP 2.0.1 part 2, the SmartChargingCtrlr and EVSE
        components' variables."""
        wanted: list[dict[str, Any]] = [{"component": {"name": "SmartChargingCtrlr"},
                   "variable": {"name": "Phases3to1"}}]
        wanted += [{"component": {"name": "EVSE", "evse": {"id": n}},
                    "variable": {"name": "ACPhaseSwitchingSupported"}}
                   for n in range(1, evses + 1)]
        answer = await self.timed_call(call.GetVariables(get_variable_data=wanted))
        can: bool | None = None
        per_evse: set[int] = set()
        for r in answer.get_variable_result:
            if r.get("attribute_status") != "Accepted":
                continue
            value = str(r.get("attribute_value", "")).strip().lower() == "true"
            name = (r.get("variable") or {}).get("name")
            if name == "Phases3to1":
                can = value
            elif name == "ACPhaseSwitchingSupported" and value:
                evse = ((r.get("component") or {}).get("evse") or {}).get("id")
                if isinstance(evse, int):
                    per_evse.add(evse)
        return can, frozenset(per_evse)

    async def set_meter_interval(self, seconds: int) -> None:
        await self.timed_call(call.SetVariables(set_variable_data=[
            {"attribute_value": str(seconds), "component": {"name": "SampledDataCtrlr"},
             "variable": {"name": "TxUpdatedInterval"}}]))

    async def trigger_meter_values(self, idx: int) -> str:
        answer = await self.timed_call(call.TriggerMessage(requested_message="MeterValues",
                                                           evse={"id": idx}))
        return answer.status


def _ev_max_kw(needs: dict) -> float | None:
    dc = needs.get("dc_charging_parameters") or {}
    if isinstance(dc.get("ev_max_power"), int | float):
        return dc["ev_max_power"] / 1000.0
    ac = needs.get("ac_charging_parameters") or {}
    if isinstance(ac.get("ev_max_current"), int | float) and isinstance(
            ac.get("ev_max_voltage"), int | float):
        return ac["ev_max_current"] * ac["ev_max_voltage"] * 3 / 1000.0
    return None
