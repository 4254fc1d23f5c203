"""`[phase_switch]`: 1 <-> 3 phase switching (agent/control/phase_switch.py applies it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PhaseSwitchSettings(BaseModel):
    """`[phase_switch]`: on chargers whose profile can switch phases (`phase_switch_pause_s`,
    e.g. Alfen NG9xx 1215), a session the allocator would pause for want of room for its
    three-phase minimum charges on one phase instead, and goes back when room returns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        False,
        description="switch phases on chargers that can (off: they stay at the count they "
        "read, as before); off by default, as the charger must allow it (Alfen: 'Allow 1- "
        "and 3-phased charging' in ACE Service Installer)",
    )
    hold_s: float = Field(
        60.0, ge=0, le=3600,
        description="a session on one phase goes back to three only after three phases "
        "(minimum plus margin_a) fit for this long without a break",
    )  # fmt: skip
    min_interval_s: float = Field(
        300.0, ge=0, le=86400,
        description="at most one switch per connector in this long (each switch pauses the "
        "EV for the charger's pause)",
    )  # fmt: skip
    margin_a: float = Field(
        2.0, ge=0, le=26,
        description="going back to three phases needs room for the minimum plus this many "
        "A per phase, so that a load varying by less does not send it back to one",
    )  # fmt: skip
    confirm_timeout_s: float = Field(
        30.0, gt=0, le=600,
        description="a switch the charger has not confirmed (its phase register) this long "
        "after its pause is given up: the agent books what the register says",
    )  # fmt: skip

    @model_validator(mode="after")
    def _interval_covers_hold(self) -> PhaseSwitchSettings:
        # A shorter interval would let a load that comes and goes make the connector flap
        # at the interval, whatever the hold says about going back up.
        if self.enabled and self.min_interval_s < self.hold_s:
            raise ValueError(f"min_interval_s ({self.min_interval_s:g}) must be >= hold_s "
                             f"({self.hold_s:g})")
        return self
