"""``kairos privacy export|erase RECIPIENT``: a data subject's access and erasure requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from engine.cli import app, out
from engine.cli.common import ConfigOption, load_settings, now, open_store
from engine.errors import DataError
from engine.store.privacy import erase_recipient, export_recipient

privacy = typer.Typer(help="Export or erase everything stored about a recipient. Example: kairos privacy export r00042",
                      no_args_is_help=True)
app.add_typer(privacy, name="privacy")

RecipientArgument = Annotated[str, typer.Argument(help="the recipient's id")]


@privacy.command("export")
def export(
    recipient: RecipientArgument,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the JSON here (default: stdout)",
                                                dir_okay=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Write everything stored about RECIPIENT as JSON: profile, consent history, devices, events,
    messages, suppressions and segments.

    Example: kairos privacy export r00042 --output r00042.json
    """
    store = open_store(load_settings(config))
    with store.session() as session:
        data = export_recipient(session, recipient)
    if data is None:
        raise DataError(None, "RECIPIENT", f"no recipient {recipient!r} is stored")
    text = json.dumps(data, indent=2, sort_keys=True, default=str)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        out.print(f"wrote everything stored about {recipient} to {output}: {len(data['events'])} event(s), "
                  f"{len(data['messages'])} message(s)", markup=False)


@privacy.command("erase")
def erase(recipient: RecipientArgument, config: ConfigOption = None) -> None:
    """Delete RECIPIENT's personal data, events and messages, keeping only a hashed suppression
    so the same address is never contacted again, even if it is imported again.

    Example: kairos privacy erase r00042
    """
    store = open_store(load_settings(config))
    with store.session() as session:
        erasure = erase_recipient(session, recipient, now())
    if erasure is None:
        raise DataError(None, "RECIPIENT", f"no recipient {recipient!r} is stored")
    if erasure.already:
        out.print(f"{recipient} was already erased; only a hashed suppression is kept", markup=False)
        return
    counts = ", ".join(f"{n} {kind}" for kind, n in erasure.deleted.items())
    out.print(f"erased {recipient}: deleted {counts}; kept a hashed suppression of their address and id",
              markup=False)
