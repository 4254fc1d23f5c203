"""`sems-sim` entry point."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("sems-sim: the hardware simulator is not yet available (issue 3)", file=sys.stderr)
    return 1
