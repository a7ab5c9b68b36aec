"""``kairos daemon``: schedules, the outbox pump, the tracking server, retraining."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Annotated
from urllib.parse import urlsplit

import typer

from engine.cli import app
from engine.cli.common import ConfigOption, SeedOption, load_settings, open_store, with_tracking_secret
from engine.schedule.daemon import Daemon
from engine.track.app import tracking_app


@app.command()
def daemon(
    worker: Annotated[bool, typer.Option("--worker", help="pump and stand for leadership, but serve no HTTP "
                                                          "(run many of these on PostgreSQL)")] = False,
    host: Annotated[str, typer.Option("--host", help="where the tracking server listens")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option("--port", help="tracking server port (default: the port of "
                                                            "tracking.base_url)", min=1, max=65535)] = None,
    name: Annotated[str | None, typer.Option("--name", help="this worker's name in claims and logs "
                                                            "(default: host:pid)")] = None,
    seed: SeedOption = None,
    config: ConfigOption = None,
) -> None:
    """Run everything unattended: fire schedules, send due messages, serve tracking, retrain.

    One process on SQLite; on PostgreSQL any number (`--worker`), one of which leads. Stops
    cleanly on SIGTERM, after committing the batch in flight. Example: kairos daemon
    """
    settings = load_settings(config)
    store = open_store(settings)
    settings = with_tracking_secret(settings, store)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apscheduler", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    listen = (host, port or urlsplit(settings.tracking.base_url).port or 8025)
    runner = Daemon(settings, store, worker=name or f"{socket.gethostname()}:{os.getpid()}",
                    app=None if worker else tracking_app(settings, store), listen=listen, seed=seed)
    try:
        asyncio.run(runner.run())
    finally:
        store.dispose()
