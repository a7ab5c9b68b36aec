"""Recipient ids packed into one byte-string array answer exactly as the list of strings would:
positions, order, items and slices, with non-ASCII ids, ids cut short by the array's width, and
ids too long to pack (which keep the list)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.store import Recipient, Store
from engine.store.columnar import PACKED_ID_WIDTH, RecipientIds, read_recipient_columns

IDS = sorted(["R-9", "r-B", "r_10", "ré", "r-a", "ré2", "zz", "r"])  # code point order
LONG = "x" * (PACKED_ID_WIDTH + 1)


def reference(ids: list[str], wanted: list[str]) -> list[int]:
    where = {value: at for at, value in enumerate(ids)}
    return [where.get(value, -1) for value in wanted]


QUERIES = [*IDS, "missing", "", "r_10X", "r-B\0", "ré\0", "R", "r_1", "zzz", LONG, "é"]


@pytest.mark.parametrize("parts", [[IDS], [IDS[:3], IDS[3:]], [IDS[:1], [], IDS[1:]]])
def test_packed_ids_answer_as_the_list_would(parts: list[list[str]]) -> None:
    ids = RecipientIds.of(parts)
    assert len(ids) == len(IDS) and list(ids) == IDS and ids[3] == IDS[3] and ids[-1] == IDS[-1]
    assert ids[2:5] == IDS[2:5] and ids.take(np.array([4, 0])) == [IDS[4], IDS[0]]
    assert ids.increasing()
    # "r_10X" would be cut to "r_10" by the array's width, "r-B\0" read back as "r-B": neither is found
    assert ids.positions(QUERIES).tolist() == reference(IDS, QUERIES)


def test_an_id_too_long_to_pack_keeps_the_strings_with_the_same_answers() -> None:
    everyone = sorted([*IDS, LONG])
    ids = RecipientIds.of([everyone[:4], everyone[4:]])  # the long one arrives after a packed part
    assert list(ids) == everyone and ids[1:3] == everyone[1:3] and ids.increasing()
    assert ids.positions(QUERIES).tolist() == reference(everyone, QUERIES)


def test_out_of_order_or_repeated_ids_are_not_increasing() -> None:
    assert not RecipientIds.of([["b", "a"]]).increasing()
    assert not RecipientIds.of([["a", "a"]]).increasing()
    assert not RecipientIds.of([[LONG, "a"]]).increasing()
    assert RecipientIds.of([]).increasing() and RecipientIds.of([]).positions(["a"]).tolist() == [-1]


def test_ids_read_from_either_database_are_packed_in_order(store: Store) -> None:
    """The store's id order (binary on SQLite, C collation on PostgreSQL) is the packed array's."""
    people = ["r-B", "r-a", "r_10", "R-9", "ré", "r\u00e9\u0301", "Z", "a"]
    with store.session() as session:
        session.add_all([Recipient(id=person, email=f"{n}@example.test") for n, person in enumerate(people)])
    with store.session() as session:
        read = read_recipient_columns(session)
    assert list(read.ids) == sorted(people) and read.ids.increasing()
    assert read.ids.positions(people).tolist() == [sorted(people).index(p) for p in people]
