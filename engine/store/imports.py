"""``kairos import KIND FILE``: CSV or JSON Lines into the store, all or nothing.

Every row is validated before anything is written; the first bad row raises a DataError naming
the file, the line and the column, and the store is left exactly as it was. Valid files are
written in one transaction and are idempotent: recipients, content and devices are upserted on
their key, events are skipped when their id (given, or derived from recipient, type, time and
item) is already stored.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import DataError
from engine.store.consent import ConsentChange, record_changes
from engine.store.db import Store, upsert
from engine.store.tables import ContentItem, Device, Event, Recipient, utcnow

KINDS = ("recipients", "devices", "content", "events")
PLATFORMS = ("fcm", "apns", "webpush")
CHUNK = 5000

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_ATTRIBUTE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class ImportResult:
    kind: str
    rows: int
    written: int


class RowError(ValueError):
    """One value of one row is invalid; ``column`` names it."""

    def __init__(self, column: str, problem: str) -> None:
        self.column = column
        super().__init__(problem)


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, row) from a .csv or .jsonl file; CSV values are strings."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise DataError(path, None, "expected a .csv or .jsonl file")
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise DataError(path, None, f"cannot open the file: {exc.strerror or exc}") from None
    with handle:
        try:
            if suffix == ".csv":
                reader = csv.DictReader(handle, strict=True)
                if not reader.fieldnames:
                    raise DataError(path, None, "the file is empty; expected a header row", line=1)
                for row in reader:
                    if None in row:
                        raise DataError(path, None, f"{len(row[None]) + len(reader.fieldnames)} fields where the "
                                        f"header has {len(reader.fieldnames)}", line=reader.line_num)
                    yield reader.line_num, {k: v for k, v in row.items() if v not in ("", None)}
            else:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(path, None, f"not valid JSON: {exc.msg}", line=number,
                                        column=exc.colno) from None
                    if not isinstance(row, dict):
                        raise DataError(path, None, "expected a JSON object on each line", line=number)
                    yield number, {k: v for k, v in row.items() if v not in ("", None)}
        except UnicodeDecodeError:
            raise DataError(path, None, "not UTF-8 text") from None
        except csv.Error as exc:
            raise DataError(path, None, f"not valid CSV: {exc}") from None


# --- value parsers ----------------------------------------------------------------------------

def _text(row: dict[str, Any], column: str, *, required: bool = False, limit: int = 200) -> str | None:
    value = row.get(column)
    if value is None:
        if required:
            raise RowError(column, "missing; this column is required")
        return None
    if not isinstance(value, str | int):
        raise RowError(column, f"expected text, got {value!r}")
    text = str(value).strip()
    if len(text) > limit:
        raise RowError(column, f"longer than {limit} characters")
    return text


def _boolean(row: dict[str, Any], column: str, default: bool) -> bool:
    value = row.get(column)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise RowError(column, f"expected true or false, got {value!r}")


def _instant(row: dict[str, Any], column: str, *, required: bool) -> datetime | None:
    value = row.get(column)
    if value is None:
        if required:
            raise RowError(column, "missing; expected an ISO 8601 time with an offset")
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise RowError(column, f"expected an ISO 8601 time such as 2026-11-01T09:00:00+00:00, got {value!r}") \
            from None
    if moment.tzinfo is None:
        raise RowError(column, f"{value!r} has no UTC offset; add one, e.g. +00:00 or Z")
    return moment.astimezone(UTC)


def _number(row: dict[str, Any], column: str, kind: Callable[[Any], Any]) -> Any:
    value = row.get(column)
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise RowError(column, f"expected {'a whole number' if kind is int else 'a number'}, got {value!r}") \
            from None


def _typed(value: Any) -> Any:
    """A CSV string as the most specific type: int, float, bool or str (JSON keeps its types)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _attributes(row: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    attributes = {}
    for column, value in row.items():
        if column in known:
            continue
        if not _ATTRIBUTE.match(column):
            raise RowError(column, "attribute names start with a letter and hold letters, digits and '_'")
        attributes[column] = _typed(value)
    return attributes


# --- one parser per kind ----------------------------------------------------------------------

RECIPIENT_COLUMNS = ("id", "email", "timezone", "locale", "consent_email", "consent_push",
                     "consent_email_source", "consent_email_at", "consent_push_source", "consent_push_at")


def _recipient(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    email = _text(row, "email", limit=320)
    if email is not None and not _EMAIL.match(email):
        raise RowError("email", f"not an email address: {email!r}")
    zone = _text(row, "timezone", limit=64) or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise RowError("timezone", f"not an IANA time zone: {zone!r} (e.g. Europe/Madrid)") from None
    return {
        "id": _text(row, "id", required=True),
        "email": email.lower() if email else None,
        "timezone": zone,
        "locale": _text(row, "locale", limit=35),
        "consent_email": _boolean(row, "consent_email", True),
        "consent_push": _boolean(row, "consent_push", True),
        "attributes": _attributes(row, RECIPIENT_COLUMNS),
        "created_at": now,
        "updated_at": now,
        # (channel, source, at) of the consent this row states; popped before the upsert
        "consent": [(channel, _text(row, f"consent_{channel}_source"),
                     _instant(row, f"consent_{channel}_at", required=False)) for channel in ("email", "push")],
    }


def _device(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    platform = _text(row, "platform", required=True)
    if platform not in PLATFORMS:
        raise RowError("platform", f"expected one of {', '.join(PLATFORMS)}, got {platform!r}")
    token = row.get("token")
    if token is None:
        raise RowError("token", "missing; this column is required")
    if platform == "webpush":
        subscription = token if isinstance(token, dict) else None
        if isinstance(token, str):
            try:
                subscription = json.loads(token)
            except json.JSONDecodeError:
                subscription = None
        keys = subscription.get("keys") if isinstance(subscription, dict) else None
        if not (isinstance(subscription, dict) and isinstance(subscription.get("endpoint"), str)
                and isinstance(keys, dict) and {"p256dh", "auth"} <= set(keys)):
            raise RowError("token", "a Web Push token is the subscription JSON: "
                            '{"endpoint": ..., "keys": {"p256dh": ..., "auth": ...}}')
        token = json.dumps(subscription, sort_keys=True, separators=(",", ":"))
    elif not isinstance(token, str) or not token.strip() or len(token) > 4096:
        raise RowError("token", "expected the device token (non-empty text)")
    return {"recipient_id": _text(row, "recipient_id", required=True), "platform": platform,
            "token": token.strip(), "active": True, "created_at": now, "updated_at": now}


CONTENT_COLUMNS = ("id", "pool", "title", "url", "topic", "published_at")


def _content(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    url = _text(row, "url", required=True, limit=2000) or ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RowError("url", f"expected an http(s) URL, got {url!r}")
    pool = _text(row, "pool", required=True) or ""
    if not re.match(r"^[a-z0-9][a-z0-9_-]{0,99}$", pool):
        raise RowError("pool", "a pool name is lowercase letters, digits, '-' and '_'")
    return {
        "id": _text(row, "id", required=True),
        "pool": pool,
        "title": _text(row, "title", required=True, limit=1000),
        "url": url,
        "topic": _text(row, "topic", limit=100),
        "published_at": _instant(row, "published_at", required=False) or now,
        "attributes": _attributes(row, CONTENT_COLUMNS),
        "updated_at": now,
    }


EVENT_COLUMNS = ("id", "recipient_id", "type", "ts", "item_id", "campaign", "channel", "variant",
                 "position", "propensity", "value")


def event_id(recipient_id: str, kind: str, ts: datetime, item_id: str | None) -> str:
    """The id of an event imported without one: stable, so a re-import is a no-op."""
    key = f"{recipient_id}\x1f{kind}\x1f{ts.astimezone(UTC).isoformat()}\x1f{item_id or ''}"
    return "h:" + hashlib.sha256(key.encode()).hexdigest()[:40]


def _event(row: dict[str, Any], _now: datetime) -> dict[str, Any]:
    unknown = [c for c in row if c not in EVENT_COLUMNS]
    if unknown:
        raise RowError(unknown[0], "unknown column; events take " + ", ".join(EVENT_COLUMNS))
    kind = _text(row, "type", required=True) or ""
    if not _EVENT_TYPE.match(kind):
        raise RowError("type", f"an event type is lowercase letters, digits, '_', '.', '-', got {kind!r}")
    recipient_id = _text(row, "recipient_id", required=True) or ""
    ts = _instant(row, "ts", required=True)
    assert ts is not None
    item_id = _text(row, "item_id")
    propensity = _number(row, "propensity", float)
    if propensity is not None and not 0 < propensity <= 1:
        raise RowError("propensity", f"a probability in (0, 1], got {propensity!r}")
    position = _number(row, "position", int)
    if position is not None and position < 0:
        raise RowError("position", "expected a position of 0 or more")
    return {
        "id": _text(row, "id") or event_id(recipient_id, kind, ts, item_id),
        "recipient_id": recipient_id,
        "type": kind,
        "ts": ts,
        "item_id": item_id,
        "campaign": _text(row, "campaign", limit=100),
        "channel": _text(row, "channel", limit=16),
        "variant": _text(row, "variant", limit=100),
        "position": position,
        "propensity": propensity,
        "value": _number(row, "value", float),
    }


def parse_event(row: dict[str, Any]) -> dict[str, Any]:
    """Validate one event, from an import file or the ingest API; raises :class:`RowError`."""
    return _event({k: v for k, v in row.items() if v not in ("", None)}, utcnow())


_PARSERS: dict[str, Callable[[dict[str, Any], datetime], dict[str, Any]]] = {
    "recipients": _recipient, "devices": _device, "content": _content, "events": _event,
}


def parse_file(kind: str, path: Path, now: datetime | None = None) -> list[dict[str, Any]]:
    """Validate every row of ``path`` as ``kind``; raise DataError at the first bad one."""
    if kind not in _PARSERS:
        raise DataError(None, "kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
    parse = _PARSERS[kind]
    moment = now or utcnow()
    rows: list[dict[str, Any]] = []
    keys: dict[Any, int] = {}
    for line, row in read_rows(path):
        try:
            parsed = parse(row, moment)
        except RowError as exc:
            raise DataError(path, exc.column, str(exc), line=line) from None
        key = (parsed["platform"], parsed["token"]) if kind == "devices" else parsed["id"]
        if key in keys and kind != "events":
            # A file that says two different things about one id is ambiguous: refuse it.
            raise DataError(path, "id", f"{key!r} appears twice (first on line {keys[key]})", line=line)
        keys.setdefault(key, line)
        rows.append(parsed)
    return rows


def import_file(store: Store, kind: str, path: Path, now: datetime | None = None) -> ImportResult:
    """Validate then write ``path`` in one transaction; returns how many rows were written."""
    rows = parse_file(kind, path, now)
    stated = [row.pop("consent") for row in rows] if kind == "recipients" else []
    with store.session() as session:
        before = session.connection().exec_driver_sql(f"SELECT COUNT(*) FROM {_TABLE[kind]}").scalar_one()
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start:start + CHUNK]
            if kind == "recipients":
                upsert(session, Recipient, chunk, ["id"],
                       ["email", "timezone", "locale", "consent_email", "consent_push", "attributes", "updated_at"])
            elif kind == "devices":
                upsert(session, Device, chunk, ["platform", "token"], ["recipient_id", "active", "updated_at"])
            elif kind == "content":
                upsert(session, ContentItem, chunk, ["id"],
                       ["pool", "title", "url", "topic", "published_at", "attributes", "updated_at"])
            else:
                upsert(session, Event, chunk, ["id"])
        after = session.connection().exec_driver_sql(f"SELECT COUNT(*) FROM {_TABLE[kind]}").scalar_one()
        if kind == "recipients":
            moment = now or utcnow()
            record_changes(session, [ConsentChange(row["id"], channel, row[f"consent_{channel}"],
                                                   source or f"import {path.name}", at or moment)
                                     for row, consents in zip(rows, stated, strict=True)
                                     for channel, source, at in consents], moment)
    return ImportResult(kind, len(rows), int(after - before) if kind == "events" else len(rows))


_TABLE = {"recipients": "recipient", "devices": "device", "content": "content_item", "events": "event"}
