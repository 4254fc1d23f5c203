"""The local HTTP API: Electra's station endpoints and the fleet service's `/api/v1` resources.

Wiring (the daemon does this inside its own asyncio loop):

    from agent.api import create_app, serve
    app = create_app(ctx)                  # ctx implements agent.api.context.ApiContext
    await serve(app, ApiServerSettings(...), stop=stop_event)

`agent.app.virtual_station.VirtualStation` is the context for a station whose chargers are
known only through this API (virtual chargers under the daemon's controller). See docs/api.md for every endpoint.
"""

from agent.api.app import create_app
from agent.api.server import ApiServerSettings, serve

__all__ = ["ApiServerSettings", "create_app", "serve"]
