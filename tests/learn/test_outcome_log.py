"""The bandit's outcome log reads as numbers on SQLite and PostgreSQL alike: one code per
recipient shared by their sends and answers (whatever order the database sorts ids in), the
campaign's first-slot sends only, answers naming it or no campaign; in chunks of whole
recipients, so outcomes summed chunk by chunk are the outcomes of the whole log."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from engine.learn import outcomes
from engine.learn.outcomes import ALL, arm_outcomes_by_group
from engine.store import Event, Store
from engine.store.campaign_columns import OutcomeLog, outcome_log_chunks

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


def read_log(store: Store, campaign: str, variants: list[str], types: list[str], *,
             size: int) -> list[OutcomeLog]:
    with store.session() as session:
        return list(outcome_log_chunks(session, campaign, variants, types, T0 + timedelta(days=1),
                                       with_recipients=True, size=size))


@pytest.mark.parametrize("size", [1, 2, 3, 10_000])
def test_sends_and_answers_share_each_recipients_code(store: Store, size: int) -> None:
    seed(store)
    chunks = read_log(store, "promo", ["a", "b"], ["click", "unsubscribe"], size=size)
    assert read_log(store, "nothing", ["a"], ["click"], size=size) == []
    sent_to, answered, everyone = [], [], []
    for log in chunks:  # each chunk holds whole recipients, coded from 0
        assert log.recipients is not None
        assert sorted(set(log.send_recipient) | set(log.response_recipient)) == list(range(len(log.recipients)))
        everyone.extend(log.recipients)
        for code, arm in zip(log.send_recipient, log.send_variant, strict=True):
            sent_to.append(log.recipients[code])
            assert arm == (0 if PEOPLE.index(log.recipients[code]) % 2 else 1)
        answered.extend((log.recipients[c], int(t)) for c, t in zip(log.response_recipient, log.response_type,
                                                                    strict=True))
    assert sorted(everyone) == sorted([*PEOPLE, "nobody"])  # nobody is in two chunks
    assert sorted(sent_to) == sorted(PEOPLE)  # first slots only, none after ``until``
    # each person's click (named or not), R-9's unsubscribe and the stranger's click; not the
    # other campaign's click nor the one before the first send
    assert sorted(answered) == sorted([*((p, 0) for p in PEOPLE), ("R-9", 1), ("nobody", 0)])
    if size == 1:
        assert len(chunks) == len(everyone)


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


def test_outcomes_summed_chunk_by_chunk_are_the_whole_logs(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many recipients with sends and late, early and missing clicks, read 7 rows at a time."""
    events = []
    for n in range(120):
        person, sent = f"p{n:03d}", T0 + timedelta(minutes=n)
        for slot in (0, 1):
            events.append(Event(id=f"s{n}.{slot}", recipient_id=person, type="sent", ts=sent, campaign="promo",
                                variant="ab"[n % 2], position=slot, item_id="i", message_id=n))
        if n % 3:
            events.append(Event(id=f"c{n}", recipient_id=person, type="click", ts=sent + timedelta(hours=n % 30)))
        if n % 17 == 0:
            events.append(Event(id=f"u{n}", recipient_id=person, type="unsubscribe", ts=sent + timedelta(hours=1)))
    with store.session() as session:
        session.add_all(events)
    labels = {f"p{n:03d}": "north" if n % 4 else "south" for n in range(0, 120, 3)}
    now = T0 + timedelta(hours=20)

    def read() -> dict[str, object]:
        with store.session() as session:
            return arm_outcomes_by_group(session, "promo", ["a", "b"], "click", timedelta(hours=24), now, labels)

    whole = read()
    monkeypatch.setattr(outcomes, "outcome_log_chunks", functools.partial(outcome_log_chunks, size=7))
    chunked = read()
    assert sorted(whole) == sorted(chunked) == [ALL, "north", "south"]
    for name, found in whole.items():
        for field in ("sends", "successes", "unsubscribes", "complaints", "goal_trials"):
            np.testing.assert_allclose(getattr(chunked[name], field), getattr(found, field))
    assert whole[ALL].sends.sum() == 120
    assert 0 < whole[ALL].goal_trials.sum() < 120  # some messages are still inside their window
