"""Benchmark: an audience rule with behavioural functions over a million recipients and ten million events.

Loads the same synthetic recipients and event log into SQLite and PostgreSQL (bulk loads, indexes
built afterwards), then on each, side by side, in a fresh process so its peak memory is its own:
evaluates the rule over every recipient (``rule_*``), then builds the members with their statuses
(``members_*``: consent, suppressions, a 5% holdout, a frequency cap). Prints one JSON document:
seconds and peak memory (resident, the process's high-water mark) per database, the audience size
and statuses (which must agree), and whether the rule stays within the limits.

    python -m bench.audience                       # 1,000,000 recipients, 10,000,000 events
    python -m bench.audience --recipients 20000 --events 200000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

RULE = ("attributes.plan == 'pro' and clicks(30) >= 1 or opens(7) >= 2 and days_since('click') < 14 "
        "or events('purchase', 90) >= 1 and topic_affinity('sports') > 0.5")
TYPES = np.array(["sent", "open", "click", "purchase", "conversion"])
TYPE_SHARE = np.array([0.5, 0.25, 0.15, 0.05, 0.05])
TOPICS = ("sports", "politics", "tech", "culture", "travel", "food", "science", "business")
ITEMS = 200
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
CHUNK = 200_000
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _recipient_rows(count: int, rng: np.random.Generator) -> list[tuple[Any, ...]]:
    plans = np.where(rng.random(count) < 0.3, "pro", "free")
    ages = rng.integers(18, 80, size=count)
    stamp = NOW.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return [(f"r{n:07d}", f"r{n:07d}@example.test", "UTC", "en", True, False,
             json.dumps({"plan": str(plans[n]), "age": int(ages[n])}), stamp, stamp) for n in range(count)]


def _event_chunks(count: int, recipients: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    """Columns of events, CHUNK at a time: recipient, type, time, item, message id."""
    for start in range(0, count, CHUNK):
        size = min(CHUNK, count - start)
        who = rng.integers(0, recipients, size=size)
        kind = TYPES[rng.choice(len(TYPES), size=size, p=TYPE_SHARE)]
        seconds = rng.uniform(0, 180 * 86400, size=size)
        item = rng.integers(0, ITEMS, size=size)
        yield start, who, kind, seconds, item


def _event_tuples(start: int, who: np.ndarray, kind: np.ndarray, seconds: np.ndarray,
                  item: np.ndarray) -> list[tuple[Any, ...]]:
    base = NOW.replace(tzinfo=None)
    rows = []
    for offset in range(len(who)):
        k = str(kind[offset])
        on_item = k in ("sent", "click")
        rows.append((f"e{start + offset}", f"r{who[offset]:07d}", k, base - timedelta(seconds=float(seconds[offset])),
                     f"i{item[offset]:03d}" if on_item else None, start + offset if k == "sent" else None))
    return rows


def _items() -> list[tuple[Any, ...]]:
    stamp = NOW.replace(tzinfo=None)
    return [(f"i{j:03d}", "news", f"Story {j}", f"https://x.test/{j}", TOPICS[j % len(TOPICS)], stamp, "{}", stamp)
            for j in range(ITEMS)]


def load(url: str, recipients: int, events: int, seed: int) -> float:
    """Create the schema and bulk-load the data; returns the seconds it took."""
    from engine.store import Store
    from engine.store.tables import Event

    started = time.perf_counter()
    store = Store.open(url)
    rng = np.random.default_rng(seed)
    indexes = list(Event.__table__.indexes)  # type: ignore[attr-defined]
    with store.engine.begin() as connection:
        for index in indexes:
            index.drop(connection)
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if store.dialect == "sqlite":
            cursor.executemany("INSERT INTO recipient (id, email, timezone, locale, consent_email, consent_push, "
                               "attributes, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                               _recipient_rows(recipients, rng))
            cursor.executemany("INSERT INTO content_item (id, pool, title, url, topic, published_at, attributes, "
                               "updated_at) VALUES (?,?,?,?,?,?,?,?)", _items())
            for chunk in _event_chunks(events, recipients, rng):
                cursor.executemany("INSERT INTO event (id, recipient_id, type, ts, item_id, message_id) "
                                   "VALUES (?,?,?,?,?,?)", [(*r[:3], r[3].strftime("%Y-%m-%d %H:%M:%S.%f"), *r[4:])
                                                            for r in _event_tuples(*chunk)])
        else:
            _copy(cursor, "recipient (id, email, timezone, locale, consent_email, consent_push, attributes, "
                  "created_at, updated_at)", _recipient_rows(recipients, rng), utc_columns=(7, 8))
            _copy(cursor, "content_item (id, pool, title, url, topic, published_at, attributes, updated_at)",
                  _items(), utc_columns=(5, 7))
            for chunk in _event_chunks(events, recipients, rng):
                _copy(cursor, "event (id, recipient_id, type, ts, item_id, message_id)", _event_tuples(*chunk),
                      utc_columns=(3,))
        raw.commit()
    finally:
        raw.close()
    with store.engine.begin() as connection:
        for index in indexes:
            index.create(connection)
        connection.execute(sa.text("ANALYZE"))
    store.dispose()
    return time.perf_counter() - started


def _copy(cursor: Any, target: str, rows: list[tuple[Any, ...]], utc_columns: tuple[int, ...]) -> None:
    with cursor.copy(f"COPY {target} FROM STDIN") as copy:
        for row in rows:
            values = list(row)
            for column in utc_columns:
                value = values[column]
                values[column] = value + "+00:00" if isinstance(value, str) else value.replace(tzinfo=UTC)
            copy.write_row(values)


def _reset_peak() -> None:
    """Start a new resident-memory high-water mark (Linux: writing 5 to clear_refs resets VmHWM)."""
    Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    """This process's resident-memory high-water mark since the last reset, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(url: str, queue: Any) -> None:
    """In a fresh process: evaluate the rule over every recipient, then build the members with their
    statuses (consent, suppressions, holdout, frequency cap); report seconds and peak memory of each."""
    from engine.audience.build import build_audience, select_recipients
    from engine.spec.load import load_campaign
    from engine.store import Store

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.toml"
        path.write_text(f'[campaign]\nname = "bench"\ngoal = "click"\n\n[audience]\nwhere = "{RULE}"\n'
                        'holdout = 0.05\nfrequency_cap = { max = 3, per = "7d" }\n\n'
                        '[content]\npool = "news"\n\n[[variants]]\nname = "a"\nsubject = "s"\ntemplate = "digest"\n')
        spec = load_campaign(path, Path(__file__).resolve().parents[1] / "templates")
    store = Store.open(url, create=False)
    _reset_peak()
    baseline = _peak_mb()
    started = time.perf_counter()
    with store.session() as session:
        selection = select_recipients(session, spec, NOW)
    rule_seconds = time.perf_counter() - started
    rule_peak = _peak_mb()
    del selection
    _reset_peak()
    started = time.perf_counter()
    with store.session() as session:
        members = build_audience(session, spec, NOW)
    members_seconds = time.perf_counter() - started
    members_peak = _peak_mb()
    statuses: dict[str, int] = {}
    for member in members:
        statuses[member.status] = statuses.get(member.status, 0) + 1
    queue.put({"rule_seconds": round(rule_seconds, 2), "rule_peak_memory_mb": round(rule_peak, 1),
               "members_seconds": round(members_seconds, 2), "members_peak_memory_mb": round(members_peak, 1),
               "baseline_memory_mb": round(baseline, 1), "audience": len(members), "statuses": statuses})
    store.dispose()


def _in_fresh_process(url: str) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=measure, args=(url, queue))
    process.start()
    result: dict[str, Any] = queue.get()
    process.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--limit-seconds", type=float, default=60.0)
    parser.add_argument("--limit-memory-mb", type=float, default=3072.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        for database in args.databases.split(","):
            schema = None
            if database == "sqlite":
                url = f"sqlite:///{Path(directory) / 'bench.db'}"
            else:
                schema = f"bench_{uuid.uuid4().hex[:10]}"
                admin = sa.create_engine(args.postgres_url)
                with admin.begin() as connection:
                    connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
                url = f"{args.postgres_url}?options=-csearch_path%3D{schema}"
            try:
                loaded = load(url, args.recipients, args.events, args.seed)
                print(f"{database}: loaded in {loaded:.0f}s; measuring", file=sys.stderr, flush=True)
                measured = _in_fresh_process(url)
                print(f"{database}: {measured}", file=sys.stderr, flush=True)
                measured["load_seconds"] = round(loaded, 1)
                measured["within_limit"] = (measured["rule_seconds"] <= args.limit_seconds
                                            and measured["rule_peak_memory_mb"] <= args.limit_memory_mb)
                results[database] = measured
            finally:
                if schema is not None:
                    with admin.begin() as connection:
                        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
                    admin.dispose()
    sizes = {r["audience"] for r in results.values()}
    report = {
        "benchmark": "audience rule over recipients and the event log",
        "rule": RULE,
        "recipients": args.recipients,
        "events": args.events,
        "limits": {"rule_seconds": args.limit_seconds, "rule_peak_memory_mb": args.limit_memory_mb},
        "results": results,
        "same_audience_on_every_database": len(sizes) == 1,
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if all(r["within_limit"] for r in results.values()) and len(sizes) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
