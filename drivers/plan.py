"""Coalesce point reads into as few Modbus requests as possible.

Points on the same unit id and table whose registers are contiguous, or separated by at most
`max_gap` unused registers, share one request of at most `max_block` registers.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Slot:
    """One value to read: where it lives and a key to find it again in the block."""

    key: Hashable
    unit_id: int
    table: str
    address: int
    length: int


@dataclass(frozen=True, slots=True)
class Block:
    unit_id: int
    table: str
    start: int
    count: int
    slots: tuple[Slot, ...]

    def registers_of(self, slot: Slot, regs: list[int]) -> list[int]:
        first = slot.address - self.start
        return regs[first : first + slot.length]


def plan_blocks(slots: Iterable[Slot], max_block: int = 120, max_gap: int = 4) -> list[Block]:
    groups: dict[tuple[int, str], list[Slot]] = {}
    for s in slots:
        if s.length > max_block:
            raise ValueError(f"{s.key}: {s.length} registers exceed max_block {max_block}")
        groups.setdefault((s.unit_id, s.table), []).append(s)
    blocks: list[Block] = []
    for (unit_id, table), members in sorted(groups.items()):
        members.sort(key=lambda s: (s.address, s.length))
        current: list[Slot] = []
        start = end = 0  # end is one past the last register of the current block
        for s in members:
            s_end = s.address + s.length
            if current and s.address - end <= max_gap and max(end, s_end) - start <= max_block:
                current.append(s)
                end = max(end, s_end)
                continue
            if current:
                blocks.append(Block(unit_id, table, start, end - start, tuple(current)))
            current, start, end = [s], s.address, s_end
        if current:
            blocks.append(Block(unit_id, table, start, end - start, tuple(current)))
    return blocks
