"""``kairos import``: recipients, devices, content and events from CSV or JSON Lines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.cli import app, out
from engine.cli.common import ConfigOption, load_settings, now, open_store, with_tracking_secret
from engine.dispatch.bounces import import_bounces
from engine.errors import DataError
from engine.render.verp import parse_verp
from engine.store.imports import KINDS, import_file


@app.command("import")
def import_(
    kind: Annotated[str, typer.Argument(help="recipients | devices | content | events | bounces")],
    file: Annotated[Path, typer.Argument(help="a .csv or .jsonl file; for bounces a Maildir or an mbox file")],
    config: ConfigOption = None,
) -> None:
    """Import a CSV or JSON Lines file (or bounces from a mailbox); all or nothing, idempotent.

    A bad row stops the import with its line number and column, and nothing of the file is
    written. `kairos import bounces PATH` reads delivery status notifications (RFC 3464) from a
    Maildir or mbox, matches them to messages by their VERP address or Message-ID, and records
    bounces (hard ones also suppress the address). Example: kairos import recipients people.csv
    """
    if kind == "bounces":
        _import_bounces(file, config)
        return
    if kind not in KINDS:
        raise DataError(None, "KIND", f"expected one of {', '.join((*KINDS, 'bounces'))}, got {kind!r}")
    if not file.exists():
        raise DataError(file, None, "no such file")
    settings = load_settings(config)
    result = import_file(open_store(settings), kind, file)
    if kind == "events":
        out.print(f"imported {result.rows} events from {file} ({result.written} new, "
                  f"{result.rows - result.written} already stored)")
    else:
        out.print(f"imported {result.rows} {kind} from {file} (inserted or updated)")


def _import_bounces(path: Path, config: Path | None) -> None:
    settings = load_settings(config)
    store = open_store(settings)
    secret = with_tracking_secret(settings, store).tracking.secret or b""

    def verp(address: str) -> int | None:
        return parse_verp(address, secret)

    result = import_bounces(store, path, verp, now())
    out.print(f"read {result.messages} message(s) from {path}: {result.reports} delivery status report(s); "
              f"{result.hard} hard bounce(s) ({result.suppressed} address(es) newly suppressed), "
              f"{result.soft} soft bounce(s), {result.unmatched} report(s) matched no message")
