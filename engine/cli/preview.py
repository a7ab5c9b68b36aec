"""``kairos preview``: see every variant as sample recipients would get it, in files or a browser."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from engine.cli import app, err, out
from engine.cli.common import ConfigOption, existing_store, load_settings, now
from engine.config import Settings
from engine.errors import SpecError
from engine.track.preview import PreviewSet, render_previews, write_previews

DEFAULT_PORT = 8030


def _secret(settings: Settings) -> bytes:
    if settings.tracking.secret is not None:
        return settings.tracking.secret
    out.print(f"${settings.tracking.secret_env} is not set: the links of these previews are signed with a "
              "throwaway secret and will not be accepted by the tracking server")
    return secrets.token_bytes(32)


@app.command()
def preview(
    campaign: Annotated[str | None, typer.Argument(help="a campaign file or name (with --serve: default all)")]
    = None,
    recipient: Annotated[str | None, typer.Option("--recipient", help="preview for this recipient id only")] = None,
    variant: Annotated[str | None, typer.Option("--variant", help="preview this variant only")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="where the .eml and .html files go",
                                         file_okay=False)] = Path("preview"),
    serve: Annotated[bool, typer.Option("--serve", help="serve a page that shows every message and reloads "
                                                        "when a template or campaign file changes")] = False,
    host: Annotated[str, typer.Option("--host", help="address of the page (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port of the page", min=1, max=65535)] = DEFAULT_PORT,
    config: ConfigOption = None,
) -> None:
    """Render a campaign's variants for sample recipients, exactly as they would be sent.

    Writes OUTPUT/<campaign>/<variant>--<recipient>.eml and .html; with --serve, starts a page
    listing campaign x variant x recipient with HTML, text and headers side by side. Sample
    recipients are the first in the database (or built-in ones before any import). Example:
    kairos preview weekly-digest --recipient r00042 --serve
    """
    settings = load_settings(config)
    store = existing_store(settings)
    secret = _secret(settings)

    def render() -> PreviewSet:
        return render_previews(settings, store, now(), secret=secret, campaign=campaign, recipient=recipient,
                               variant=variant)

    if serve:
        _serve(render, settings, host, port)
        return
    if campaign is None:
        raise SpecError(None, "CAMPAIGN", "name the campaign to preview (or use --serve to browse them all)")
    previews = render()
    for warning in previews.warnings:
        err.print(f"warning: {warning}", markup=False)
    for error in previews.errors:
        err.print(f"error: {error}", markup=False)
    written = write_previews(previews.previews, output)
    for path in written:
        out.print(f"wrote {path}", markup=False)
    if previews.errors:
        raise typer.Exit(2)


def _serve(render: Callable[[], PreviewSet], settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from engine.track.preview_app import preview_app

    render()  # a bad campaign name or recipient fails here, before the server starts
    page = preview_app(render, [settings.paths.templates, settings.paths.campaigns])
    out.print(f"preview at http://{host}:{port}/ (reloads when a template or campaign file changes; Ctrl-C stops)")
    uvicorn.run(page, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
