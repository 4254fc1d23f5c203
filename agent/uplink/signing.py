"""Optional HMAC-SHA256 signing of cloud commands (`[mqtt] command_hmac_key_file`).

The broker ACL alone lets anything holding a station's MQTT credentials command it (issue
12, finding 11). With a key set, a command runs only if it carries:

- `exp`: when it stops being valid, ISO-8601 with a zone or Unix seconds; refused when past,
  or more than `command_exp_max_s` ahead (a signed command must not be replayable for long;
  within its life the command id de-duplicates a replay);
- `sig`: as the LAST member, written exactly `,"sig":"<64 lower-case hex>"}` at the end of
  the payload (trailing whitespace allowed), the HMAC-SHA256 with the key of

      <stationId> "\n" <command name> "\n" <the payload's bytes with that tail replaced by "}">

  i.e. the signer serialises the command as it likes, signs those exact bytes (no canonical
  JSON to agree on), then splices the signature in before the closing brace. The station id
  and name are signed so that a signed payload cannot be replayed on another station's or
  another command's topic (a signed `ping` must not become a `power.cap.clear`).

The key is the key file's first line as UTF-8 bytes (read with agent.config.secrets, so a
file readable by group or others is refused).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from typing import Any

SIG_TAIL = re.compile(rb',"sig":"([0-9a-f]{64})"\}\s*$')


def signed_bytes(station_id: str, name: str, body: bytes) -> bytes:
    """What the HMAC covers: `body` is the payload without its `,"sig":"..."` tail."""
    return f"{station_id}\n{name}\n".encode() + body


def sign(key: bytes, station_id: str, name: str, body: bytes) -> bytes:
    """The signed payload for a JSON object `body` (the reference for integrators)."""
    mac = hmac.new(key, signed_bytes(station_id, name, body), hashlib.sha256).hexdigest()
    stripped = body.rstrip()
    assert stripped.endswith(b"}"), "body must be a JSON object"
    return stripped[:-1] + b',"sig":"' + mac.encode() + b'"}'


def parse_exp(value: Any) -> datetime | None:
    """`exp` as an aware UTC datetime; None when absent or not a time."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            return parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    except (ValueError, OverflowError, OSError):
        return None
    return None


class CommandVerifier:
    """Checks one command's signature and expiry; returns (code, message) when refused."""

    def __init__(self, key: bytes, station_id: str, max_ahead: timedelta) -> None:
        self.key = key
        self.station_id = station_id
        self.max_ahead = max_ahead

    def refusal(self, name: str, payload: bytes, raw: dict[str, Any], now: datetime) -> tuple[str, str] | None:
        if "sig" not in raw:
            return "unsigned", "sig: required (this station accepts only signed commands)"
        tail = SIG_TAIL.search(payload)
        if tail is None:
            return "bad_signature", 'sig: must end the payload as ,"sig":"<64 lower-case hex>"}'
        body = payload[: tail.start()] + b"}"
        expected = hmac.new(self.key, signed_bytes(self.station_id, name, body), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, bytes.fromhex(tail.group(1).decode())):
            return "bad_signature", "sig: does not match the payload, command name and station id"
        exp = parse_exp(raw.get("exp"))
        if exp is None:
            return "invalid_exp", "exp: required, ISO-8601 with a zone or Unix seconds"
        if exp <= now:
            return "expired", f"exp: {exp.isoformat()} has passed"
        if exp > now + self.max_ahead:
            return "invalid_exp", (f"exp: {exp.isoformat()} is more than "
                                   f"{self.max_ahead.total_seconds():.0f} s ahead")
        return None
