"""Who fires schedules and retrains: exactly one process at a time.

On PostgreSQL the leader is whoever holds a session-level advisory lock; the lock lives on a
connection the leader keeps open, so when the leader dies (or its connection does) PostgreSQL
releases the lock and the next candidate to ask takes over. No home-made coordination beyond
that. On SQLite there is one daemon by design; a lock file next to the database enforces it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from engine.errors import StoreError
from engine.store import Store

LOCK_NAME = "kairos-leader"


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_try_advisory_lock``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Leadership(ABC):
    """A claim to leadership that can be tried repeatedly and released."""

    @abstractmethod
    def try_acquire(self) -> bool:
        """Become the leader if nobody is; True while this process leads."""

    @abstractmethod
    def release(self) -> None:
        """Step down (on shutdown)."""


class AdvisoryLockLeadership(Leadership):
    """Leadership through a PostgreSQL advisory lock held on a dedicated connection."""

    def __init__(self, store: Store, name: str = LOCK_NAME) -> None:
        self.engine = store.engine
        self.key = advisory_key(name)
        self._connection: sa.Connection | None = None

    def try_acquire(self) -> bool:
        if self._connection is not None:
            try:  # still leading only while the connection that holds the lock is alive
                self._connection.execute(sa.text("SELECT 1"))
                return True
            except SQLAlchemyError:
                self._drop()
        try:
            connection = self.engine.connect()
            acquired = bool(connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"),
                                               {"key": self.key}).scalar())
            connection.commit()
        except SQLAlchemyError as exc:
            raise StoreError("asking for leadership", exc) from exc
        if acquired:
            self._connection = connection
        else:
            connection.close()
        return acquired

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.invalidate()
            finally:
                self._connection = None

    def release(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            self._connection.commit()
            self._connection.close()
        except SQLAlchemyError:
            self._drop()
        self._connection = None


class LockFileLeadership(Leadership):
    """The single daemon of a SQLite database, enforced with an exclusive lock file."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".daemon.lock")
        self._handle: IO[str] | None = None

    def try_acquire(self) -> bool:
        if self._handle is not None:
            return True
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def leadership_for(store: Store) -> Leadership:
    """The leadership mechanism of this store's database."""
    if store.dialect == "postgresql":
        return AdvisoryLockLeadership(store)
    database = store.engine.url.database
    return LockFileLeadership(Path(database or "kairos.db"))
