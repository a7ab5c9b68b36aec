"""``kairos serve``: the tracking server on its own (the daemon runs it too)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import typer
import uvicorn

from engine.cli import app, out
from engine.cli.common import ConfigOption, load_settings, open_store, with_tracking_secret
from engine.track.app import tracking_app


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option("--port", help="port (default: the port of tracking.base_url)",
                                             min=1, max=65535)] = None,
    config: ConfigOption = None,
) -> None:
    """Run the tracking server: tracked links, opens, one-click unsubscribes, event ingest, health.

    Listens on 127.0.0.1 unless told otherwise. Example: kairos serve --port 8025
    """
    settings = load_settings(config)
    store = open_store(settings)
    settings = with_tracking_secret(settings, store)
    listen = port or urlsplit(settings.tracking.base_url).port or 8025
    out.print(f"tracking server on http://{host}:{listen} (public base URL {settings.tracking.base_url})")
    uvicorn.run(tracking_app(settings, store), host=host, port=listen, log_level="warning", access_log=False)
