"""What every command shares: the --config option, settings, the store, the clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from engine.cli import err
from engine.config import Settings
from engine.errors import StoreError
from engine.store import Store, queries

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="config file (default: ./config.toml if present, else built-in defaults)",
                 dir_okay=False),
]
SeedOption = Annotated[
    int | None, typer.Option("--seed", help="seed for every random choice, for reproducible decisions"),
]


def load_settings(config: Path | None) -> Settings:
    return Settings.load(config)


def with_tracking_secret(settings: Settings, store: Store) -> Settings:
    """``settings`` with a tracking secret: the environment's, else the one kept in the database.

    Every process on one database then signs and verifies links alike without setup; setting
    the variable replaces it (links signed before no longer verify).
    """
    if settings.tracking.secret is not None:
        return settings
    with store.session() as session:
        secret = queries.stored_secret(session, "tracking")
    err.print(f"note: ${settings.tracking.secret_env} is not set; signing tracked links with the secret kept in the "
              "database", markup=False)
    return dataclasses.replace(settings, tracking=dataclasses.replace(settings.tracking, secret=secret))


def open_store(settings: Settings) -> Store:
    """The configured database, with its tables created if missing."""
    return Store.open(settings.database_url)


def existing_store(settings: Settings) -> Store | None:
    """The configured database if it already exists (never creates one), else None."""
    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return None
    try:
        store = Store(url)
        with store.engine.connect():
            pass
    except StoreError:
        return None
    except Exception:  # an unreachable server is "no store" for read-only checks
        return None
    return store


def now() -> datetime:
    return datetime.now(UTC)
