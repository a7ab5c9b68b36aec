"""The ``kairos`` command: a thin layer that parses, calls the library and prints.

Commands live in one module per group (campaigns, data, demo); each registers itself on
:data:`app`. Errors: a :class:`KairosError` prints its message and exits with its code (2 for
bad input, 1 for a failure at run time); anything else is a bug and prints a one-line report
(the traceback with ``KAIROS_DEBUG=1``).
"""

from __future__ import annotations

import os
import sys
import traceback

import typer
from rich.console import Console

from engine.errors import KairosError

app = typer.Typer(
    name="kairos",
    help="Kairos: email campaigns personalized at send time, learning from every send.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point of the ``kairos`` console script."""
    from engine.cli import (  # noqa: F401  (register the commands)
        campaigns,
        daemon,
        data,
        demo,
        learning,
        preview,
        privacy,
        report,
        segments,
        serve,
    )

    try:
        # Standalone mode: typer reports its own usage errors (exit 2) and honours typer.Exit.
        app()
    except KairosError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if os.environ.get("KAIROS_DEBUG"):
            traceback.print_exc()
        err.print(f"internal error: {type(exc).__name__}: {exc} (set KAIROS_DEBUG=1 for the traceback)",
                  markup=False)
        sys.exit(1)
