"""`sems` command line."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("sems: no commands yet", file=sys.stderr)
    return 1
