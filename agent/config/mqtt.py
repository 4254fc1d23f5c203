"""`[mqtt]`: how the station reaches its cloud broker (agent/uplink/ uses it; embedded by agent.config.settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

STATION_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


class MqttSettings(BaseModel):
    """How the station reaches its cloud broker, and how much it buffers meanwhile."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="publish to the cloud at all")
    host: str = Field("127.0.0.1", min_length=1, description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port (8883 is usual with TLS)")
    station_id: str = Field(
        "station", pattern=STATION_ID_PATTERN, description="station id: topic prefix and stationId"
    )
    topic_prefix: str = Field("sems/v1", description="topics live under <prefix>/<stationId>/")
    client_id: str | None = Field(None, description="MQTT client id (default sems-<stationId>)")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version")
    keepalive_s: int = Field(
        10, ge=2, le=600, description="keepalive: a silent broker is detected in ~2x this"
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="TCP+CONNACK deadline")
    window: int = Field(50, ge=1, le=1000, description="QoS 1 publishes in flight (20-100 best)")
    ack_timeout_s: float = Field(
        30.0, gt=0, description="backstop: a PUBACK missing this long ends the connection "
        "(reconnect, resend), for a broker that keeps the link up but stops acknowledging"
    )
    backoff_initial_s: float = Field(0.5, gt=0, description="first reconnect delay")
    backoff_max_s: float = Field(60.0, gt=0, description="reconnect delay ceiling (with jitter)")
    tls_ca_file: Path | None = Field(None, description="CA bundle: setting it turns TLS on")
    tls_cert_file: Path | None = Field(None, description="client certificate (PEM)")
    tls_key_file: Path | None = Field(None, description="client private key (PEM)")
    tls_insecure: bool = Field(False, description="skip server host name check (lab only)")
    allow_plaintext: bool = Field(
        False, description="send the password without TLS (no tls_ca_file); refused otherwise"
    )
    username: str | None = Field(None, description="MQTT user name")
    password: SecretStr | None = Field(None, description="MQTT password (prefer password_file)")
    password_file: Path | None = Field(
        None,
        description="file whose first line is the password; a relative path is a systemd "
        "credential ($CREDENTIALS_DIRECTORY/<name>)",
    )
    outbox_max_rows: int = Field(
        500_000, ge=100, description="outbox cap in messages; telemetry thinned then dropped"
    )
    outbox_max_bytes: int = Field(
        256 * 1024 * 1024, ge=64 * 1024, description="outbox cap in payload bytes"
    )
    telemetry_thin_max_stride: int = Field(
        8, ge=1, le=1024, description="thin old telemetry down to 1 sample in this many, then drop"
    )
    telemetry_interval_s: float = Field(10.0, gt=0, description="telemetry period")
    health_interval_s: float = Field(60.0, gt=0, description="health period (also sent on change)")
    savings_interval_s: float = Field(900.0, gt=0, description="savings record period")
    command_hmac_key_file: Path | None = Field(
        None, description="when set, only commands signed with this key (first line) run "
        "(docs/security.md); a relative path is a systemd credential"
    )
    command_exp_max_s: float = Field(
        600.0, gt=0, le=86_400, description="signed commands: how far ahead `exp` may be"
    )
    command_retention_days: float = Field(
        7.0, gt=0, description="how long a command id is remembered for de-duplication"
    )

    @model_validator(mode="after")
    def _check(self) -> MqttSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file: give both or neither")
        if self.password is not None and self.password_file is not None:
            raise ValueError("password, password_file: give one, not both")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s: must be >= backoff_initial_s")
        if self.topic_prefix.strip("/") != self.topic_prefix or not self.topic_prefix:
            raise ValueError("topic_prefix: no leading/trailing '/'")
        if any(c in self.topic_prefix for c in "+#\0"):
            raise ValueError("topic_prefix: no MQTT wildcards")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_ca_file is not None

    @property
    def base_topic(self) -> str:
        return f"{self.topic_prefix}/{self.station_id}"

    def topic(self, name: str) -> str:
        return f"{self.base_topic}/{name}"

    def resolved_command_key(self) -> bytes | None:
        """The command signing key, or None when commands are not signed."""
        if self.command_hmac_key_file is None:
            return None
        from agent.config.secrets import read_secret

        key = read_secret(self.command_hmac_key_file, "mqtt.command_hmac_key_file")
        if len(key) < 16:  # a short key is guessable; refuse rather than pretend to sign
            raise ValueError("mqtt.command_hmac_key_file: key must be at least 16 characters")
        return key.encode()

    def resolved_password(self) -> str | None:
        """The password, reading password_file now (so a rotated secret is picked up)."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            from agent.config.secrets import read_secret

            # Relative: a systemd credential in $CREDENTIALS_DIRECTORY (agent/config/secrets.py).
            return read_secret(self.password_file, "mqtt.password_file")
        return None
