"""`[api]`: the local API's listeners (agent/api/server.py serves them)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # agent/api/body_limit.py: above it, 413 unread


class ApiServerSettings(BaseModel):
    """`[api]` settings of the agent."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a default

    socket_path: Path = Field(default=Path("/run/sems/api.sock"), description="Unix socket of the local API")
    socket_mode: int = Field(default=0o660, ge=0, le=0o777, description="Permission bits of the socket file")
    socket_group: str | None = Field(default=None, description="Group owning the socket (technicians' group); None keeps the process's")
    tcp_port: int | None = Field(default=None, ge=0, le=65535, description="Also listen on loopback TCP at this port (needs a token; 0 picks a free port)")
    tcp_host: str = Field(default="127.0.0.1", description="Loopback address for TCP")
    token: str | None = Field(default=None, min_length=16, description="Bearer token for TCP (prefer token_file)")
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, description="Largest request body accepted; above it 413, refused before it is read")
    session_silence_s: float = Field(default=900.0, gt=0, description="Station without configured chargers: a session whose integration has not reported for this long is stopped (reason api_silent)")
    token_file: Path | None = Field(default=None, description="File holding the bearer token; a relative path is a systemd credential ($CREDENTIALS_DIRECTORY/<name>, LoadCredential=)")

    @field_validator("tcp_host")
    @classmethod
    def _loopback(cls, value: str) -> str:
        try:
            if ipaddress.ip_address(value).is_loopback:
                return value
        except ValueError:
            pass
        raise ValueError(f"must be a loopback address, not {value!r}")

    def bearer_token(self) -> str:
        if self.token_file is not None:
            from agent.config.secrets import read_secret

            # Relative: a systemd credential in $CREDENTIALS_DIRECTORY (agent/config/secrets.py).
            token = read_secret(self.token_file, "api.token_file")
        else:
            token = self.token or ""
        if len(token) < 16:
            raise ValueError("api.token: TCP needs a bearer token of at least 16 characters")
        return token
