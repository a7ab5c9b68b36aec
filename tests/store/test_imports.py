from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import func, select

from engine.errors import DataError
from engine.store import ContentItem, Device, Event, Recipient, Store
from engine.store.imports import import_file


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def count(store: Store, table: type) -> int:
    with store.session() as session:
        return int(session.exec(select(func.count()).select_from(table)).one())


def test_recipients_csv_typed_attributes_and_idempotence(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "people.csv",
                 "id,email,timezone,consent_email,plan,age,score,vip,signup\n"
                 "a,A@Example.test,Europe/Madrid,true,pro,41,0.5,false,2026-01-02\n"
                 "b,,UTC,no,free,,,,\n")
    first = import_file(store, "recipients", path)
    second = import_file(store, "recipients", path)
    assert first.rows == second.rows == 2
    with store.session() as session:
        a, b = session.get(Recipient, "a"), session.get(Recipient, "b")
    assert a is not None and b is not None
    assert a.email == "a@example.test" and a.timezone == "Europe/Madrid" and a.consent_email
    assert a.attributes == {"plan": "pro", "age": 41, "score": 0.5, "vip": False, "signup": "2026-01-02"}
    assert b.email is None and not b.consent_email and b.consent_push and b.attributes == {"plan": "free"}
    assert count(store, Recipient) == 2


def test_jsonl_content_devices_and_events(store: Store, tmp_path: Path) -> None:
    content = write(tmp_path, "items.jsonl", "\n".join(json.dumps(r) for r in [
        {"id": "i1", "pool": "news", "title": "One", "url": "https://x.test/1", "topic": "tech",
         "published_at": "2026-11-20T10:00:00+01:00", "price": 9.5},
    ]) + "\n")
    import_file(store, "content", content)
    with store.session() as session:
        item = session.get(ContentItem, "i1")
    assert item is not None and item.attributes == {"price": 9.5} and item.published_at.hour == 9

    subscription = {"endpoint": "https://push.example.test/abc", "keys": {"p256dh": "BPk", "auth": "x1"}}
    devices = write(tmp_path, "devices.jsonl", json.dumps(
        {"recipient_id": "a", "platform": "webpush", "token": subscription}) + "\n" + json.dumps(
        {"recipient_id": "a", "platform": "fcm", "token": "tok-1"}) + "\n")
    import_file(store, "devices", devices)
    import_file(store, "devices", devices)
    assert count(store, Device) == 2

    events = write(tmp_path, "events.csv",
                   "recipient_id,type,ts,item_id,propensity\n"
                   "a,sent,2026-11-20T09:00:00Z,i1,0.25\n"
                   "a,click,2026-11-20T09:05:00+00:00,i1,\n"
                   "a,click,2026-11-20T09:05:00+00:00,i1,\n")
    result = import_file(store, "events", events)
    assert (result.rows, result.written) == (3, 2)  # the repeated click has the same derived id
    assert import_file(store, "events", events).written == 0
    with store.session() as session:
        sent = session.exec(select(Event).where(Event.type == "sent")).one()
    assert sent.propensity == 0.25 and sent.item_id == "i1"


BAD_ROWS = [
    ("recipients", "people.csv", "id,email\na,a@x.test\n,b@x.test\n", 3, "id", "missing"),
    ("recipients", "people.csv", "id,email\na,not-an-address\n", 2, "email", "not an email address"),
    ("recipients", "people.csv", "id,timezone\na,Moon/Base\n", 2, "timezone", "IANA"),
    ("recipients", "people.csv", "id,consent_email\na,maybe\n", 2, "consent_email", "true or false"),
    ("recipients", "people.csv", "id,email\na,a@x.test\na,b@x.test\n", 3, "id", "appears twice"),
    ("recipients", "people.csv", "id,email\na,a@x.test,extra\n", 2, None, "fields where the header has 2"),
    ("recipients", "people.jsonl", '{"id": "a"}\n{"id": \n', 2, None, "not valid JSON"),
    ("recipients", "people.csv", "id,__class__\na,x\n", 2, "__class__", "attribute names"),
    ("content", "items.csv", "id,pool,title,url\ni,news,T,ftp://x\n", 2, "url", "http(s) URL"),
    ("devices", "devices.csv", "recipient_id,platform,token\na,pager,t\n", 2, "platform", "fcm, apns, webpush"),
    ("devices", "devices.csv", "recipient_id,platform,token\na,webpush,not-json\n", 2, "token", "subscription JSON"),
    ("events", "events.csv", "recipient_id,type,ts\na,click,2026-11-20T09:00:00\n", 2, "ts", "no UTC offset"),
    ("events", "events.csv", "recipient_id,type,ts,propensity\na,sent,2026-11-20T09:00:00Z,1.5\n", 2,
     "propensity", "(0, 1]"),
    ("events", "events.csv", "recipient_id,type,ts,colour\na,sent,2026-11-20T09:00:00Z,red\n", 2, "colour",
     "unknown column"),
    ("events", "events.csv", "recipient_id,type,ts\na,Big Click,2026-11-20T09:00:00Z\n", 2, "type", "event type"),
]


@pytest.mark.parametrize(("kind", "name", "text", "line", "column", "message"), BAD_ROWS,
                         ids=[f"{b[0]}-{b[5]}" for b in BAD_ROWS])
def test_a_bad_row_names_line_and_column_and_nothing_is_written(
        store: Store, tmp_path: Path, kind: str, name: str, text: str, line: int, column: str | None,
        message: str) -> None:
    good = write(tmp_path, "seed.csv", "id,email\nkeep,keep@x.test\n")
    import_file(store, "recipients", good)
    before = {t: count(store, t) for t in (Recipient, ContentItem, Device, Event)}
    path = write(tmp_path, name, text)
    with pytest.raises(DataError) as caught:
        import_file(store, kind, path)
    assert caught.value.line == line
    assert caught.value.field == column
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{path}:{line}")
    assert {t: count(store, t) for t in before} == before


def test_a_good_file_with_one_bad_row_writes_nothing(store: Store, tmp_path: Path) -> None:
    lines = ["id,email"] + [f"r{i},r{i}@x.test" for i in range(100)] + ["bad,bad-address"]
    path = write(tmp_path, "people.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r":102: email"):
        import_file(store, "recipients", path)
    assert count(store, Recipient) == 0
