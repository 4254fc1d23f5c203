"""Summarise a `mutmut run` and fail on any surviving mutant not reviewed as equivalent.

Run by `make test-mutants` after mutmut (docs/testing.md). Prints killed / survived / other
per mutated module, then checks every survivor against tests/mutants/survivors.md, where
each equivalent mutant is listed as a line "- `<mutant name>`: <why it is equivalent>".
Exit 1 when a mutant survived that the file does not list, or a mutant was not tested at
all (no covering test, timeout, suspicious); a listed name that no longer survives is
reported so the list stays current (mutant numbers shift when the module changes).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SURVIVORS = ROOT / "tests" / "mutants" / "survivors.md"
LISTED = re.compile(r"^- `([\w.ǁ]+__mutmut_\d+)`:")


def results() -> dict[str, str]:
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "mutmut"), "results", "--all", "true"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout  # fmt: skip
    status = {}
    for line in out.splitlines():
        name, sep, state = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            status[name] = state
    return status


def module_of(name: str) -> str:
    # agent.control.apply.x_plan_writes__mutmut_3 -> agent/control/apply.py
    return "/".join(name.split(".")[:-1]) + ".py"


def main() -> int:
    status = results()
    if not status:
        print("no mutmut results: run `mutmut run` first", file=sys.stderr)
        return 1
    per_module: dict[str, Counter[str]] = defaultdict(Counter)
    for name, state in status.items():
        per_module[module_of(name)][state] += 1
    print(f"{'module':34} {'mutants':>7} {'killed':>7} {'survived':>8} {'other':>6}")
    for module, counts in sorted(per_module.items()):
        total = sum(counts.values())
        other = total - counts["killed"] - counts["survived"]
        print(f"{module:34} {total:7} {counts['killed']:7} {counts['survived']:8} {other:6}")

    listed = {m.group(1) for line in SURVIVORS.read_text().splitlines()
              if (m := LISTED.match(line))}  # fmt: skip
    survived = {n for n, s in status.items() if s == "survived"}
    untested = sorted(n for n, s in status.items() if s not in ("killed", "survived"))
    unreviewed = sorted(survived - listed)
    stale = sorted(listed - survived)
    for name in sorted(survived & listed):
        print(f"equivalent (listed): {name}")
    for name in stale:
        print(f"listed in {SURVIVORS.name} but no longer survives: {name}")
    for name in unreviewed:
        print(f"SURVIVED, not listed as equivalent: {name}  (mutmut show {name})")
    for name in untested:
        print(f"NOT TESTED ({status[name]}): {name}")
    if unreviewed or untested:
        print(f"{len(unreviewed)} unreviewed survivor(s), {len(untested)} untested: kill them "
              f"with a test, or list them in {SURVIVORS.relative_to(ROOT)} with the reason")
        return 1
    print(f"all {len(status)} mutants killed or listed as equivalent ({len(survived)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
