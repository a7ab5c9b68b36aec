"""The store on SQLite and PostgreSQL: the same code, the same guarantees."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlmodel import select

from engine.errors import StoreError
from engine.store import Event, Message, MessageState, Recipient, Store, outbox, queries
from engine.store.db import JsonText, execute_many, upsert

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def plan(store: Store, recipients: int, send_at: datetime = NOW) -> int:
    with store.session() as session:
        run = outbox.start_run(session, "c", "hash", "manual", NOW)
        assert run.id is not None
        outbox.insert_messages(session, [
            {"run_id": run.id, "campaign": "c", "recipient_id": f"r{i:03d}", "state": MessageState.PLANNED,
             "send_at": send_at + timedelta(seconds=i), "attempts": 0, "updated_at": NOW}
            for i in range(recipients)])
        return run.id


def test_times_come_back_aware_in_utc_and_naive_ones_are_refused(store: Store) -> None:
    madrid = timezone(timedelta(hours=1))
    with store.session() as session:
        session.add(Event(id="e1", recipient_id="r1", type="click", ts=datetime(2026, 11, 23, 13, 0, tzinfo=madrid)))
    with store.session() as session:
        event = session.get(Event, "e1")
        assert event is not None
        assert event.ts == NOW and event.ts.tzinfo is not None and event.ts.utcoffset() == timedelta(0)
    with pytest.raises(StoreError), store.session() as session:
        session.add(Event(id="e2", recipient_id="r1", type="click", ts=datetime(2026, 11, 23, 13, 0)))
    with store.session() as session:
        assert session.get(Event, "e2") is None


def test_the_event_log_reads_as_columns_with_times_to_the_microsecond(store: Store) -> None:
    """The learning read of the log (times as epoch seconds, converted all at once) gives what each
    stored time says: to the microsecond, from any zone it was given in, inside [since, until)."""
    madrid = timezone(timedelta(hours=1))
    times = [datetime(2026, 11, 23, 13, 0, 0, 1, tzinfo=madrid), datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC),
             datetime(2026, 11, 23, 12, 0, 0, 1, tzinfo=UTC) + timedelta(microseconds=1),
             datetime(2026, 11, 24, 0, 0, tzinfo=UTC)]
    with store.session() as session:
        session.add_all([Event(id=f"e{n}", recipient_id=f"r{n % 2}", type="open", ts=ts, item_id="i", position=0)
                         for n, ts in enumerate(times)])
    with store.session() as session:
        columns = queries.event_columns(session, since=datetime(2026, 1, 1, tzinfo=UTC),
                                        until=datetime(2026, 11, 24, tzinfo=UTC), recipient_ids=["r0", "r1"])
    order = np.argsort(columns["ts"])
    assert columns["ts"].dtype == np.float64
    assert columns["ts"][order].tolist() == sorted(ts.timestamp() for ts in times[:3])
    assert sorted(columns["recipient_id"]) == ["r0", "r0", "r1"] and set(columns["type"]) == {"open"}
    assert columns["position"] == [0, 0, 0] and columns["message_id"] == [None, None, None]


def test_times_stored_as_other_text_still_read_as_the_time_they_say(tmp_path: Path) -> None:
    """SQLite holds times as text; one written in another form than the store writes (with a
    'T', an offset, no fraction) reads as the instant it names."""
    store = Store.open(f"sqlite:///{tmp_path / 'k.db'}")
    with store.session() as session:
        session.add(Event(id="e1", recipient_id="r1", type="open", ts=NOW))
    with store.engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO event (id, recipient_id, type, ts) "
                                   "VALUES ('e2', 'r1', 'open', '2026-11-23T13:30:00+01:00')"))
    with store.session() as session:
        columns = queries.event_columns(session, since=NOW - timedelta(days=1), until=NOW + timedelta(days=1))
    assert sorted(columns["ts"].tolist()) == [NOW.timestamp(), (NOW + timedelta(minutes=30)).timestamp()]


def test_upsert_is_idempotent_and_updates_in_place(store: Store) -> None:
    rows = [{"id": "a", "email": "a@x.test", "timezone": "UTC", "attributes": {"plan": "pro"},
             "created_at": NOW, "updated_at": NOW}]
    with store.session() as session:
        upsert(session, Recipient, rows, ["id"], ["email", "attributes", "updated_at"])
        upsert(session, Recipient, rows, ["id"], ["email", "attributes", "updated_at"])
    with store.session() as session:
        upsert(session, Recipient, [{**rows[0], "attributes": {"plan": "free"}}], ["id"],
               ["email", "attributes", "updated_at"])
    with store.session() as session:
        found = session.exec(select(Recipient)).all()
    assert len(found) == 1 and found[0].attributes == {"plan": "free"}


def test_a_recipient_is_planned_once_per_run(store: Store) -> None:
    run_id = plan(store, 3)
    with store.session() as session:
        outbox.insert_messages(session, [{"run_id": run_id, "campaign": "c", "recipient_id": "r001",
                                          "state": MessageState.PLANNED, "send_at": NOW, "attempts": 0,
                                          "updated_at": NOW}])
        assert len(outbox.run_messages(session, run_id)) == 3


def test_claims_only_due_messages_oldest_first_and_never_twice(store: Store) -> None:
    plan(store, 5)
    with store.session() as session:
        first = outbox.claim_due_messages(session, NOW + timedelta(seconds=2), 10, "w1")
    assert [m.recipient_id for m in first] == ["r000", "r001", "r002"]
    assert [(m.send_at, m.attempts, m.decision, m.header_message_id) for m in first] == [
        (NOW + timedelta(seconds=i), 0, None, None) for i in range(3)]
    with store.session() as session:
        stored = outbox.messages_by_id(session, [m.id for m in first])
    assert all(m.state == MessageState.CLAIMED and m.claimed_by == "w1" for m in stored.values())
    with store.session() as session:
        second = outbox.claim_due_messages(session, NOW + timedelta(hours=1), 10, "w2")
    assert [m.recipient_id for m in second] == ["r003", "r004"]


def test_concurrent_claimers_get_disjoint_batches(store: Store) -> None:
    plan(store, 200)
    claimed: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def claim(worker: str) -> None:
        barrier.wait()
        ids: list[str] = []
        while True:
            with store.session() as session:
                batch = outbox.claim_due_messages(session, NOW + timedelta(hours=1), 7, worker)
            if not batch:
                break
            ids.extend(m.recipient_id for m in batch)
        claimed[worker] = ids

    threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [rid for ids in claimed.values() for rid in ids]
    assert len(every) == 200 and len(set(every)) == 200


def test_recovery_releases_claimed_and_holds_in_flight_for_review(store: Store) -> None:
    run_id = plan(store, 4)
    with store.session() as session:
        batch = outbox.claim_due_messages(session, NOW + timedelta(hours=1), 3, "dead")
        outbox.update_messages(session, [{"id": batch[0].id, "state": MessageState.SENDING},
                                         {"id": batch[1].id, "state": MessageState.SENT}])
    with store.session() as session:
        recovery = outbox.recover_run(session, run_id, NOW)
        states = {m.recipient_id: m.state for m in outbox.run_messages(session, run_id)}
    assert recovery.released == 1 and recovery.review == [batch[0].id]
    assert states == {"r000": MessageState.REVIEW, "r001": MessageState.SENT, "r002": MessageState.PLANNED,
                      "r003": MessageState.PLANNED}
    with store.session() as session:
        assert not outbox.finish_run_if_done(session, run_id, NOW)
        outbox.update_messages(session, [{"id": m.id, "state": MessageState.SENT}
                                         for m in outbox.run_messages(session, run_id)
                                         if m.state == MessageState.PLANNED])
        assert outbox.finish_run_if_done(session, run_id, NOW)


def test_one_bulk_update_sets_shared_and_per_message_values(store: Store) -> None:
    run_id = plan(store, 4)
    later = NOW + timedelta(minutes=5)
    with store.session() as session:
        batch = outbox.claim_due_messages(session, NOW + timedelta(hours=1), 4, "w")
        outbox.update_messages(session, [
            *({"id": m.id, "state": MessageState.SENT, "sent_at": later, "updated_at": later} for m in batch[::3]),
            {"id": batch[1].id, "state": MessageState.FAILED, "last_error": "550 no such user", "updated_at": later},
            {"id": batch[2].id, "state": MessageState.PLANNED, "send_at": later, "claimed_by": None,
             "decision": {"send_time": {"local_hour": 9}}, "updated_at": later},
        ])
    with store.session() as session:
        found = {m.recipient_id: m for m in outbox.run_messages(session, run_id)}
    assert (found["r000"].state, found["r000"].sent_at) == (found["r003"].state, found["r003"].sent_at) \
        == (MessageState.SENT, later)
    assert (found["r001"].state, found["r001"].last_error) == (MessageState.FAILED, "550 no such user")
    assert found["r002"].state == MessageState.PLANNED and found["r002"].send_at == later
    assert found["r002"].claimed_by is None and found["r002"].decision == {"send_time": {"local_hour": 9}}
    assert found["r000"].claimed_by == "w" and found["r000"].last_error is None


def test_bulk_writes_store_what_one_row_at_a_time_would(store: Store) -> None:
    later = NOW + timedelta(minutes=5)
    events = [{"id": f"e{i}", "recipient_id": "r1", "type": "sent", "ts": later, "item_id": None, "campaign": "c",
               "channel": "email", "variant": None, "position": i, "propensity": 0.25 * i, "value": None,
               "run_id": 1, "message_id": i, "data": {"items": [i]} if i else None} for i in range(3)]
    with store.session() as session:
        outbox.record_events(session, events)
        outbox.record_events(session, events)  # stored once
        session.add(Event(id="one", recipient_id="r1", type="sent", ts=later, position=0, propensity=0.0,
                          run_id=1, message_id=0, channel="email", campaign="c"))
    with store.session() as session:
        found = {e.id: e for e in session.exec(select(Event)).all()}
        raw = dict(session.execute(sa.text("SELECT id, ts FROM event")).all())
    assert set(found) == {"e0", "e1", "e2", "one"}
    assert found["e2"].ts == later and found["e2"].propensity == 0.5 and found["e2"].data == {"items": [2]}
    assert found["e0"].data is None and found["e1"].value is None
    assert raw["e0"] == raw["one"]  # the same stored form of a time as the ORM's


def test_json_encoded_once_is_stored_as_the_value_it_encodes(store: Store) -> None:
    decision = {"items": [{"id": "n1", "probability": 0.25}], "variant": "a"}
    encoded = JsonText(json.dumps(decision))
    with store.session() as session:
        outbox.record_events(session, [
            {"id": "once", "recipient_id": "r1", "type": "sent", "ts": NOW, "data": encoded},
            {"id": "text", "recipient_id": "r1", "type": "sent", "ts": NOW, "data": "a plain string"}])
        session.add(Event(id="orm", recipient_id="r1", type="sent", ts=NOW, data=encoded))  # type: ignore[arg-type]
    with store.session() as session:
        found = {e.id: e.data for e in session.exec(select(Event)).all()}
    assert found == {"once": decision, "orm": decision, "text": "a plain string"}


def test_bulk_writes_convert_equal_values_of_other_types_apart(store: Store) -> None:
    # True == 1 in Python: a JSON column must still store true and 1 as given
    values: list[object] = [True, 1, None, True, 1, None, "1"]
    with store.session() as session:
        outbox.record_events(session, [{"id": f"e{i}", "recipient_id": "r1", "type": "x", "ts": NOW, "data": value}
                                       for i, value in enumerate(values)])
    with store.session() as session:
        found = {e.id: e.data for e in session.exec(select(Event)).all()}
    assert [(found[f"e{i}"], type(found[f"e{i}"])) for i in range(len(values))] == [
        (value, type(value)) for value in values]


def test_a_bulk_write_that_breaks_a_constraint_leaves_nothing(store: Store) -> None:
    rows = [{"run_id": 1, "campaign": "c", "recipient_id": "r1", "state": MessageState.PLANNED, "send_at": NOW,
             "attempts": 0, "updated_at": NOW}] * 2
    with pytest.raises(StoreError), store.session() as session:
        outbox.record_events(session, [{"id": "e1", "recipient_id": "r1", "type": "sent", "ts": NOW}])
        execute_many(session, sa.insert(Message.__table__), rows)  # type: ignore[attr-defined]
    with pytest.raises(StoreError), store.session() as session:
        outbox.record_events(session, [{"id": "e2", "recipient_id": "r1", "type": "sent", "ts": datetime(2026, 1, 1)}])
    with store.session() as session:
        assert session.exec(select(Event)).all() == [] and outbox.run_messages(session, 1) == []


def test_bulk_writes_with_values_computed_at_execution(store: Store) -> None:
    # Without state, attempts and updated_at, the statement computes their defaults per row.
    table = Message.__table__  # type: ignore[attr-defined]
    with store.session() as session:
        execute_many(session, sa.insert(table), [{"run_id": 7, "campaign": "c", "recipient_id": f"r{i}",
                                                  "send_at": NOW} for i in range(2)])
        execute_many(session, sa.update(table).where(table.c.recipient_id.in_(sa.bindparam("ids", expanding=True)))
                     .values(attempts=sa.bindparam("tries")), [{"ids": ["r0", "r1"], "tries": 2}])
    with store.session() as session:
        found = outbox.run_messages(session, 7)
    assert [(m.recipient_id, m.state, m.attempts) for m in found] == [("r0", "planned", 2), ("r1", "planned", 2)]
    assert all(m.updated_at > NOW - timedelta(days=365) for m in found)


def test_suppression_by_recipient_and_by_hashed_address(store: Store) -> None:
    rows = [queries.RecipientRow(f"r{i}", f"R{i}@Example.test", "UTC", None, True, True, {}) for i in range(3)]
    with store.session() as session:
        assert queries.add_suppression(session, reason="unsubscribe", recipient_id="r0")
        assert not queries.add_suppression(session, reason="unsubscribe", recipient_id="r0")
        queries.add_suppression(session, reason="erased", email="r1@example.TEST")
        queries.add_suppression(session, reason="manual", recipient_id="r2", channel="push")
    with store.session() as session:
        assert queries.suppressed_recipients(session, rows, "email") == {"r0", "r1"}
        assert queries.suppressed_recipients(session, rows, "push") == {"r0", "r1", "r2"}


def test_a_message_with_several_items_counts_once(store: Store) -> None:
    events = [
        # one Kairos message with three slots
        *({"id": f"m1.{s}", "recipient_id": "r1", "type": "sent", "ts": NOW, "item_id": f"i{s}", "message_id": 1}
          for s in range(3)),
        # imported history: two impressions of one message, then another message
        {"id": "h1", "recipient_id": "r1", "type": "sent", "ts": NOW - timedelta(days=1), "campaign": "old",
         "item_id": "i1"},
        {"id": "h2", "recipient_id": "r1", "type": "sent", "ts": NOW - timedelta(days=1), "campaign": "old",
         "item_id": "i2"},
        {"id": "h3", "recipient_id": "r1", "type": "sent", "ts": NOW - timedelta(days=2), "campaign": "old",
         "item_id": "i1"},
        {"id": "c1", "recipient_id": "r1", "type": "click", "ts": NOW, "item_id": "i1", "message_id": 1},
        {"id": "c2", "recipient_id": "r1", "type": "click", "ts": NOW, "item_id": "i2", "message_id": 1},
    ]
    with store.session() as session:
        outbox.record_events(session, events)
        outbox.record_events(session, events)  # idempotent
    with store.session() as session:
        counts = queries.recipient_event_counts(session, ["sent", "click"], NOW - timedelta(days=7))
    assert counts == {("r1", "sent"): 3, ("r1", "click"): 2}


def test_a_stored_secret_is_made_once_and_every_process_reads_the_same(store: Store) -> None:
    with store.session() as session:
        first = queries.stored_secret(session, "tracking")
    with store.session() as session:
        again = queries.stored_secret(session, "tracking")
        other = queries.stored_secret(session, "elsewhere")
    assert first == again and len(first) == 32
    assert other != first
    # another connection pool (another process) on the same database finds the same one
    elsewhere = Store.open(store.url)
    try:
        with elsewhere.session() as session:
            assert queries.stored_secret(session, "tracking") == first
    finally:
        elsewhere.dispose()


def test_json_columns_keep_every_value_exactly(store: Store) -> None:
    # Written and read with orjson, except what it cannot take exactly: integers beyond 64 bits.
    # (In a list or an object: SQLite's column affinity would turn a bare large number into a float.)
    values: list[object] = [[2**70, -(2**64)], [18446744073709551615], {"n": 12345678901234567890123},
                            [0.1, 2.917785509446694e-06], "caf\u00e9 \u2603", {"nested": [1, None, "x", False]}]
    with store.session() as session:
        outbox.record_events(session, [{"id": f"e{i}", "recipient_id": "r1", "type": "x", "ts": NOW, "data": value}
                                       for i, value in enumerate(values)])
        outbox.record_events(session, [{"id": "numpy", "recipient_id": "r1", "type": "x", "ts": NOW,
                                        "data": {"p": np.float64(0.25), "n": np.int64(3), 7: "key"}}])
    with store.session() as session:
        found = {e.id: e.data for e in session.exec(select(Event)).all()}
    assert [found[f"e{i}"] for i in range(len(values))] == values
    assert found["numpy"] == {"p": 0.25, "n": 3, "7": "key"}


def test_json_that_older_versions_wrote_still_reads(tmp_path: Path) -> None:
    # The json module wrote NaN (not JSON: SQLite stored it, PostgreSQL's json type never would).
    store = Store.open(f"sqlite:///{tmp_path / 'old.db'}")
    with store.session() as session:
        session.execute(sa.text("INSERT INTO event (id, recipient_id, type, ts, data) VALUES "
                                "('old', 'r1', 'x', '2026-01-01 00:00:00', '{\"score\": NaN, \"ids\": [1, 2]}')"))
    with store.session() as session:
        [event] = session.exec(select(Event)).all()
    store.dispose()
    assert event.data["ids"] == [1, 2] and event.data["score"] != event.data["score"]  # NaN
