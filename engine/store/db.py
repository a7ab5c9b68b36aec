"""The database handle: one SQLAlchemy engine, sessions, schema creation, dialect-aware upserts."""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError, StatementError
from sqlalchemy.sql.dml import UpdateBase
from sqlmodel import Session, SQLModel

from engine.errors import StoreError
from engine.store import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PostgresqlInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert


def _normalize_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the tracking server read while the sender writes; NORMAL sync is durable across
    # process crashes (only an OS crash can lose the last transactions); a generous busy
    # timeout turns short lock waits into waits rather than errors.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class JsonText(str):
    """A JSON value already serialized, stored as it is in a JSON column: a value written to two
    places (a decision on its message and on its `sent` event) is encoded once."""


# Compact output; numpy numbers as plain ones; non-string keys as strings, as the json module does.
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """``value`` as JSON text, as stored in JSON columns.

    orjson, which takes a sixth of the json module's time: every message stores its decision
    twice. What orjson refuses (an integer beyond 64 bits) goes through the json module.
    Not-a-number becomes null, as JSON has no such value.
    """
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


# Twenty digits in a row may be an integer beyond 64 bits, which orjson would read as a float.
_LONG_DIGITS = re.compile(r"\d{20}")


def loads(text: str | bytes) -> Any:
    """The value of stored JSON text. The json module reads what orjson would refuse (``NaN``,
    which older rows may hold) or read inexactly (an integer beyond 64 bits)."""
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode()
    elif not isinstance(text, str):  # SQLite hands a JSON number stored alone back as a number
        raise TypeError(f"JSON text must be str or bytes, not {type(text).__name__}")
    if _LONG_DIGITS.search(text) is None:
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.loads(text)
    return json.loads(text)


def _json_serializer(value: Any) -> str:
    return str(value) if isinstance(value, JsonText) else dumps(value)


class Store:
    """A database: SQLite for one process, PostgreSQL for many workers.

    :param url: a SQLAlchemy URL (``sqlite:///kairos.db``, ``postgresql+psycopg://...``).
    """

    def __init__(self, url: str) -> None:
        self.url = _normalize_url(url)
        try:
            if self.url.startswith("sqlite"):
                self.engine = sa.create_engine(self.url, connect_args={"timeout": 30},
                                               json_serializer=_json_serializer,
                                               json_deserializer=loads)
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = sa.create_engine(self.url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                                               json_serializer=_json_serializer,
                                               json_deserializer=loads)
        except (SQLAlchemyError, ImportError) as exc:
            raise StoreError(f"opening {self.safe_url}", exc) from exc

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for messages."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Store:
        """Connect, and create missing tables when ``create``."""
        store = cls(url)
        if create:
            store.create_schema()
        return store

    def create_schema(self) -> None:
        try:
            SQLModel.metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"creating tables in {self.safe_url}", exc) from exc

    def drop_schema(self) -> None:
        """Drop every Kairos table (tests, and the demo's fresh start)."""
        SQLModel.metadata.drop_all(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error.

        Database errors surface as :class:`StoreError`; the transaction leaves nothing behind.
        """
        session = Session(self.engine, expire_on_commit=False)
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StoreError("writing to the database", exc) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def upsert(
    session: Session,
    table: type[SQLModel],
    rows: Sequence[dict[str, Any]],
    key: Sequence[str],
    update: Sequence[str] | None = None,
) -> None:
    """Insert ``rows``; on a conflict over ``key`` update the ``update`` columns (or skip).

    One statement executed for all rows (executemany), on SQLite and PostgreSQL alike.
    """
    if not rows:
        return
    columns = {column for row in rows for column in row}
    if any(len(row) != len(columns) for row in rows):
        # executemany needs every row to bind the same columns
        rows = [{column: row.get(column) for column in columns} for row in rows]
    statement = _upsert_statement(session.get_bind().dialect.name, table, tuple(key), tuple(update or ()))
    session.flush()
    execute_many(session, statement, rows)


def execute_many(session: Session, statement: UpdateBase, rows: Sequence[dict[str, Any]]) -> None:
    """Execute ``statement`` once per row of parameters (executemany), in the session's transaction.

    Through the session's connection, without the ORM's statement processing (a third of the
    cost of a small batch). On SQLite the parameters are also converted here, a column at a time,
    and handed to the driver as tuples: SQLAlchemy's own executemany builds and converts a
    dictionary per row, which cost more than SQLite's work for the bulk writes of planning and
    sending. PostgreSQL keeps SQLAlchemy's path, which batches an INSERT's rows into one
    statement (insertmanyvalues). Rows must all bind the same names.
    """
    if not rows:
        return
    connection = session.connection()
    names = tuple(rows[0])
    plan = _driver_plan(connection.dialect, statement, names) if connection.dialect.name == "sqlite" else None
    if plan is None:
        connection.execute(statement, list(rows))
        return
    sql, order = plan
    columns = []
    for name, processor in order:
        values = [row[name] for row in rows]
        try:
            columns.append(values if processor is None else _converted(processor, values))
        except Exception as exc:  # a value the column refuses (a naive time): as SQLAlchemy reports it
            raise StatementError(f"({type(exc).__name__}) {exc}", sql, None, exc) from exc
    connection.exec_driver_sql(sql, list(zip(*columns, strict=True)))


def _converted(processor: Any, values: list[Any]) -> list[Any]:
    """``values`` converted by ``processor``, each distinct value once: a batch's rows share their
    times (and many their None), and converting a time costs two Python calls."""
    memo: dict[tuple[type, Any], Any] = {}
    try:
        return [memo[key] if (key := (type(value), value)) in memo else memo.setdefault(key, processor(value))
                for value in values]
    except TypeError:  # an unhashable value (a dict for a JSON column): each converted on its own
        return list(map(processor, values))


@functools.lru_cache(maxsize=256)
def _driver_plan(dialect: sa.Dialect, statement: UpdateBase, names: tuple[str, ...]
                 ) -> tuple[str, tuple[tuple[str, Any], ...]] | None:
    """The SQL of ``statement`` for ``dialect`` with its positional parameters, in order, each
    with its conversion (or None); None when the statement needs more than its parameters
    (defaults computed at execution, expanding IN lists, a statement that is not positional)."""
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(names))
    if (not compiled.positional or compiled.insert_prefetch or compiled.update_prefetch
            or any(bind.expanding for bind in compiled.binds.values())):
        return None
    order = compiled.positiontup or []
    if any(name not in names for name in order):
        return None
    processors = compiled._bind_processors
    return str(compiled), tuple((name, processors.get(name)) for name in order)


@functools.cache
def _upsert_statement(dialect: str, table: type[SQLModel], key: tuple[str, ...],
                      update: tuple[str, ...]) -> sa.Insert:
    # Built once per (dialect, table, key, update): constructing the statement costs more than
    # executing it for a small batch (tracking writes a few dozen rows at a time).
    # Each dialect's module is imported when first needed: PostgreSQL's loads every one of its
    # drivers' modules, a sixtieth of a second that a command on SQLite need not spend.
    statement: PostgresqlInsert | SqliteInsert
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        statement = postgresql.insert(table.__table__)  # type: ignore[attr-defined]
    else:
        from sqlalchemy.dialects import sqlite

        statement = sqlite.insert(table.__table__)  # type: ignore[attr-defined]
    if update:
        return statement.on_conflict_do_update(
            index_elements=list(key), set_={column: statement.excluded[column] for column in update})
    return statement.on_conflict_do_nothing(index_elements=list(key))
