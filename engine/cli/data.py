"""``kairos import``: recipients, devices, content and events from CSV or JSON Lines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.cli import app, out
from engine.cli.common import ConfigOption, load_settings, open_store
from engine.errors import DataError
from engine.store.imports import KINDS, import_file


@app.command("import")
def import_(
    kind: Annotated[str, typer.Argument(help="recipients | devices | content | events")],
    file: Annotated[Path, typer.Argument(help="a .csv or .jsonl file", dir_okay=False)],
    config: ConfigOption = None,
) -> None:
    """Import a CSV or JSON Lines file; all or nothing, idempotent on id.

    A bad row stops the import with its line number and column, and nothing of the file is
    written. Example: kairos import recipients people.csv
    """
    if kind not in KINDS:
        raise DataError(None, "KIND", f"expected one of {', '.join(KINDS)}, got {kind!r}")
    if not file.exists():
        raise DataError(file, None, "no such file")
    settings = load_settings(config)
    result = import_file(open_store(settings), kind, file)
    if kind == "events":
        out.print(f"imported {result.rows} events from {file} ({result.written} new, "
                  f"{result.rows - result.written} already stored)")
    else:
        out.print(f"imported {result.rows} {kind} from {file} (inserted or updated)")
