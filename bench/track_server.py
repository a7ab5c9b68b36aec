"""A tracking server process for bench/track.py: the Kairos app, or a bare Starlette app.

Both run under the same uvicorn settings (one process, httptools if installed, no access log)
so the comparison measures what Kairos adds: token verification and the event write.
"""

from __future__ import annotations

import argparse
import dataclasses

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from engine.config import Settings, TrackingSettings
from engine.store import Store
from engine.track.app import tracking_app


def bare_app() -> Starlette:
    """What a redirect costs with nothing behind it."""

    async def click(request: Request) -> Response:
        return RedirectResponse("https://news.example.test/article?utm_source=kairos", status_code=302)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/c/{token}", click), Route("/health", health)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("app", choices=["kairos", "bare"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    if args.app == "kairos":
        settings = dataclasses.replace(Settings(), tracking=TrackingSettings(secret=args.secret.encode()))
        app = tracking_app(settings, Store.open(args.db))
    else:
        app = bare_app()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
