"""The committed OpenAPI document (docs/openapi.json): `python -m agent.api.openapi` rewrites
it; tests/api check it is current. The schema depends only on the routes and models, so an
app built over no context describes the API exactly."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def document() -> dict[str, Any]:
    from agent.api.app import create_app

    return create_app(None).openapi()  # type: ignore[arg-type]


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    DOC.write_text(render())
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
