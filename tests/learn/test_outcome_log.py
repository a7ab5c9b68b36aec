"""The bandit's outcome log reads as numbers on SQLite and PostgreSQL alike: one code per
recipient shared by their sends and answers (whatever order the database sorts ids in), the
campaign's first-slot sends only, answers naming it or no campaign."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from engine.learn.outcomes import ALL, arm_outcomes_by_group
from engine.store import Event, Store
from engine.store.campaign_columns import read_outcome_log

T0 = datetime(2026, 10, 1, 9, tzinfo=UTC)
PEOPLE = ["r-B", "r-a", "r_10", "R-9", "ré"]  # orders differ between collations


def seed(store: Store) -> None:
    events = []
    for n, person in enumerate(PEOPLE):
        events.append(Event(id=f"s{n}", recipient_id=person, type="sent", ts=T0 + timedelta(minutes=n),
                            campaign="promo", variant="a" if n % 2 else "b", position=0, item_id="i", message_id=n))
        events.append(Event(id=f"s{n}-1", recipient_id=person, type="sent", ts=T0 + timedelta(minutes=n),
                            campaign="promo", variant="a" if n % 2 else "b", position=1, item_id="j", message_id=n))
        events.append(Event(id=f"c{n}", recipient_id=person, type="click", ts=T0 + timedelta(hours=1, minutes=n),
                            campaign="promo" if n % 3 else None))
    events += [
        Event(id="late-send", recipient_id="r-B", type="sent", ts=T0 + timedelta(days=2), campaign="promo",
              variant="a", position=0, message_id=99),
        Event(id="other", recipient_id="r-a", type="click", ts=T0 + timedelta(hours=2), campaign="else"),
        Event(id="before", recipient_id="r-a", type="click", ts=T0 - timedelta(hours=2), campaign="promo"),
        Event(id="unsub", recipient_id="R-9", type="unsubscribe", ts=T0 + timedelta(hours=3)),
        Event(id="stranger", recipient_id="nobody", type="click", ts=T0 + timedelta(hours=1)),
    ]
    with store.session() as session:
        session.add_all(events)


def test_sends_and_answers_share_each_recipients_code(store: Store) -> None:
    seed(store)
    with store.session() as session:
        log = read_outcome_log(session, "promo", ["a", "b"], ["click", "unsubscribe"], T0 + timedelta(days=1),
                               with_recipients=True)
        empty = read_outcome_log(session, "nothing", ["a"], ["click"], T0 + timedelta(days=1))
    assert log.recipients is not None and sorted(log.recipients) == sorted([*PEOPLE, "nobody"])
    assert len(log.send_ts) == len(PEOPLE)  # first slots only, none after ``until``
    sent_to = [log.recipients[c] for c in log.send_recipient]
    assert sorted(sent_to) == sorted(PEOPLE)
    for code, arm in zip(log.send_recipient, log.send_variant, strict=True):
        assert arm == (0 if PEOPLE.index(log.recipients[code]) % 2 else 1)
    answered = sorted((log.recipients[c], int(t)) for c, t in zip(log.response_recipient, log.response_type,
                                                                  strict=True))
    # each person's click (named or not), R-9's unsubscribe and the stranger's click; not the
    # other campaign's click nor the one before the first send
    assert answered == sorted([*((p, 0) for p in PEOPLE), ("R-9", 1), ("nobody", 0)])
    assert len(empty.send_ts) == 0 and empty.recipients is None


def test_grouped_outcomes_follow_each_recipients_group(store: Store) -> None:
    seed(store)
    labels = {"r-B": "north", "r_10": "north", "r-a": "south"}
    with store.session() as session:
        found = arm_outcomes_by_group(session, "promo", ["a", "b"], "click", timedelta(hours=24),
                                      T0 + timedelta(days=1), labels)
    np.testing.assert_array_equal(found[ALL].sends, [2, 3])
    np.testing.assert_array_equal(found[ALL].successes, [2, 3])
    np.testing.assert_array_equal(found[ALL].unsubscribes, [1, 0])
    np.testing.assert_array_equal(found["north"].sends, [0, 2])  # r-B (n=0) and r_10 (n=2) got b
    np.testing.assert_array_equal(found["south"].sends, [1, 0])
