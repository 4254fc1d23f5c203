"""Write docs/schemas/*.json from the pydantic models: one file per uplink message and per
command. `python -m agent.uplink.schemas [--check] [DIR]`; --check exits 1 when the files
differ from the models (the test suite runs it)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agent.uplink.commands import COMMANDS
from agent.uplink.messages import UPLINK_MESSAGES, full_model

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def render() -> dict[str, str]:
    """File name -> JSON text."""
    out: dict[str, str] = {}
    for cls in UPLINK_MESSAGES:
        schema = full_model(cls).model_json_schema(by_alias=True)
        schema["$id"] = cls.SCHEMA
        out[f"{cls.SCHEMA}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    for name, model in COMMANDS.items():
        schema = model.model_json_schema(by_alias=True)
        schema["$id"] = f"sems.cmd.{name}.v1"
        schema["title"] = f"cmd/{name}"
        out[f"sems.cmd.{name}.v1.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.uplink.schemas", description=__doc__)
    parser.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        stale = [n for n, text in files.items()
                 if not (args.dir / n).exists() or (args.dir / n).read_text() != text]
        extra = sorted(p.name for p in args.dir.glob("*.json") if p.name not in files)
        for name in stale + extra:
            print(f"schemas: {args.dir / name} is out of date", file=sys.stderr)
        return 1 if stale or extra else 0
    args.dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.dir / name).write_text(text)
    print(f"wrote {len(files)} schemas to {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
