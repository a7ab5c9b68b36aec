"""The ``kairos`` command: a thin layer that parses, calls the library and prints.

Commands live in one module per group (campaigns, data, demo); each registers itself on
:data:`app`. Errors: a :class:`KairosError` prints its message and exits with its code (2 for
bad input, 1 for a failure at run time); anything else is a bug and prints a one-line report
(the traceback with ``KAIROS_DEBUG=1``).
"""

from __future__ import annotations

import gc
import importlib
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


# The module that registers each command. ``kairos send`` loads its own module and not, say, the
# daemon's web server or the demo's simulator (a sixth of its start-up); help, or an unknown
# command, loads them all. The campaign commands always load: with one command alone, Typer
# would make it the whole program.
COMMAND_MODULES = {
    "validate": "campaigns", "plan": "campaigns", "send": "campaigns", "daemon": "daemon", "import": "data",
    "demo": "demo", "train": "learning", "evaluate": "learning", "preview": "preview", "privacy": "privacy",
    "report": "report", "segments": "segments", "serve": "serve",
}


def load_commands(argv: list[str]) -> None:
    """Register the commands that ``argv`` (the arguments after the program name) may run."""
    # The program itself takes no options: anything before a command (--help) wants them all.
    wanted = COMMAND_MODULES.get(argv[0]) if argv and not argv[0].startswith("-") else None
    for module in sorted(set(COMMAND_MODULES.values())):
        if wanted is None or module in ("campaigns", wanted):
            importlib.import_module(f"engine.cli.{module}")


def main() -> None:
    """Entry point of the ``kairos`` console script."""
    # Loading the code allocates a hundred thousand objects that live as long as the process
    # (modules, classes, SQLAlchemy's tables): collecting as they come took a seventh of the
    # start-up, and every later full collection would scan them again. They are loaded with the
    # collector off, then frozen out of its sight.
    gc.disable()
    try:
        load_commands(sys.argv[1:])
    finally:
        gc.freeze()
        gc.enable()
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
