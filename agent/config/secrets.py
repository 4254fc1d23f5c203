"""Secrets read from files: the MQTT password and the local API's bearer token.

A relative path names a systemd credential: `password_file = "mqtt-password"` reads
`$CREDENTIALS_DIRECTORY/mqtt-password`, which systemd fills from the unit's
`LoadCredential=mqtt-password:/etc/sems/mqtt-password` (readable by root only on disk; the
service sees a private copy). An absolute path is read as it is. Files are read when the
secret is needed (connect, start-up), so a rotated secret is picked up on the next use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def resolve(path: Path, environ: Mapping[str, str] | None = None) -> Path:
    """Where `path` really is: relative paths live in $CREDENTIALS_DIRECTORY when set."""
    env = os.environ if environ is None else environ
    if not path.is_absolute() and env.get("CREDENTIALS_DIRECTORY"):
        return Path(env["CREDENTIALS_DIRECTORY"]) / path
    return path


def _exposed(real: Path, field: str) -> str | None:
    """Why a secret file may not be used: readable or writable by group or others (the
    secret is then not a secret). Refused rather than warned about: a warning in a log
    nobody reads leaves the station commandable by anyone on the box."""
    try:
        mode = real.stat().st_mode & 0o777
    except OSError:
        return None  # reading it reports the real problem
    if mode & 0o077:
        return (f"{field}: {real} is accessible to group or others (mode {mode:04o}); "
                f"chmod 600 it (or use a systemd credential)")
    return None


def read_secret(path: Path, field: str, environ: Mapping[str, str] | None = None) -> str:
    """The file's first line, without the newline. ValueError("field: why") if unreadable
    or accessible to group or others."""
    real = resolve(path, environ)
    exposed = _exposed(real, field)
    if exposed is not None:
        raise ValueError(exposed)
    try:
        text = real.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{field}: cannot read {real}: {exc.strerror or exc}") from None
    return text.splitlines()[0].strip() if text else ""


def check_secret_file(field: str, path: Path) -> list[str]:
    """For `sems config check`: problems with a secret file that can be seen from here. A
    relative path (a systemd credential) exists only inside the service, so it is skipped
    unless $CREDENTIALS_DIRECTORY is set."""
    if not path.is_absolute() and not os.environ.get("CREDENTIALS_DIRECTORY"):
        return []
    real = resolve(path)
    if not real.is_file():
        return [f"{field}: no such file {real}"]
    if not os.access(real, os.R_OK):
        return [f"{field}: {real} is not readable by this user"]
    exposed = _exposed(real, field)
    return [exposed] if exposed is not None else []
